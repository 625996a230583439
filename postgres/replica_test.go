package postgres

// replicaEnv, when set, makes the test binary a replica for the
// multi-process tests instead of running tests.
const replicaEnv = "WEBHOOK_POSTGRES_REPLICA"

// runReplica is the test binary's life as a replica. It returns the exit
// code.
func runReplica() int {
	return 2
}
