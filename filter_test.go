package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
)

// The tests of this file go through the public API (Registry, Matcher,
// Dispatcher) and check the decisions of pipeliner/reference.md, "Filter
// operators" and "on-field-change". The fuzz target and the benchmarks use
// the compiled rules directly.

const filterHookURL = "https://example.com/x"

// filterOpCase is one filter condition on an Opportunity and a record it
// is applied to. The same tables seed FuzzFilter.
type filterOpCase struct {
	name   string
	path   string // the filter's dot path
	op     string // the filter-op; "" leaves it out, so eq applies
	value  string // the filter value, as JSON text
	record string // the Opportunity, as JSON text
	holds  bool
}

// filterOperatorCases: each of Pipeliner's 19 operators, holding and not.
var filterOperatorCases = []filterOpCase{
	{"eq holds for the same string", "name", "eq", `"Acme deal"`, `{"name":"Acme deal"}`, true},
	{"eq does not hold for another case", "name", "eq", `"acme deal"`, `{"name":"Acme deal"}`, false},
	{"ieq holds for another case", "name", "ieq", `"acme deal"`, `{"name":"ACME Deal"}`, true},
	{"ieq does not hold for another string", "name", "ieq", `"acme deal"`, `{"name":"Acme deals"}`, false},
	{"not-eq holds for another string", "name", "not-eq", `"Globex"`, `{"name":"Acme"}`, true},
	{"not-eq does not hold for the same string", "name", "not-eq", `"Acme"`, `{"name":"Acme"}`, false},
	{"not-ieq holds for another string", "name", "not-ieq", `"globex"`, `{"name":"Acme"}`, true},
	{"not-ieq does not hold for the same string in another case", "name", "not-ieq", `"acme"`, `{"name":"ACME"}`, false},
	{"contains holds for a substring", "name", "contains", `"Acme"`, `{"name":"Big Acme deal"}`, true},
	{"contains does not hold for a substring in another case", "name", "contains", `"acme"`, `{"name":"Big Acme deal"}`, false},
	{"starts holds for a prefix", "name", "starts", `"Acme"`, `{"name":"Acme deal"}`, true},
	{"starts does not hold for a suffix", "name", "starts", `"deal"`, `{"name":"Acme deal"}`, false},
	{"ends holds for a suffix", "name", "ends", `"deal"`, `{"name":"Acme deal"}`, true},
	{"ends does not hold for a prefix", "name", "ends", `"Acme"`, `{"name":"Acme deal"}`, false},
	{"icontains holds for a substring in another case", "name", "icontains", `"acme"`, `{"name":"Big ACME deal"}`, true},
	{"icontains does not hold for an absent substring", "name", "icontains", `"acme"`, `{"name":"Big deal"}`, false},
	{"istarts holds for a prefix in another case", "name", "istarts", `"acme"`, `{"name":"ACME deal"}`, true},
	{"istarts does not hold for a suffix", "name", "istarts", `"acme"`, `{"name":"Big ACME"}`, false},
	{"iends holds for a suffix in another case", "name", "iends", `"acme"`, `{"name":"Big ACME"}`, true},
	{"iends does not hold for a prefix", "name", "iends", `"acme"`, `{"name":"ACME deal"}`, false},
	{"null holds for a null field", "closing_date", "null", `true`, `{"closing_date":null}`, true},
	{"null does not hold for a set field", "closing_date", "null", `true`, `{"closing_date":"2026-12-31"}`, false},
	{"not-null holds for a set field", "closing_date", "not-null", `true`, `{"closing_date":"2026-12-31"}`, true},
	{"not-null does not hold for a null field", "closing_date", "not-null", `true`, `{"closing_date":null}`, false},
	{"empty holds for an empty string", "description", "empty", `true`, `{"description":""}`, true},
	{"empty does not hold for text", "description", "empty", `true`, `{"description":"x"}`, false},
	{"not-empty holds for text", "description", "not-empty", `true`, `{"description":"x"}`, true},
	{"not-empty does not hold for an empty string", "description", "not-empty", `true`, `{"description":""}`, false},
	{"gt holds for a greater number", "amount", "gt", `9`, `{"amount":10}`, true},
	{"gt does not hold for an equal number", "amount", "gt", `9`, `{"amount":9}`, false},
	{"gte holds for an equal number", "amount", "gte", `9`, `{"amount":9}`, true},
	{"gte does not hold for a smaller number", "amount", "gte", `9`, `{"amount":8}`, false},
	{"lt holds for a smaller number", "amount", "lt", `9`, `{"amount":8}`, true},
	{"lt does not hold for an equal number", "amount", "lt", `9`, `{"amount":9}`, false},
	{"lte holds for an equal number", "amount", "lte", `9`, `{"amount":9}`, true},
	{"lte does not hold for a greater number", "amount", "lte", `9`, `{"amount":10}`, false},
	{"between holds inside the range", "amount", "between", `[1,10]`, `{"amount":5}`, true},
	{"between does not hold above the range", "amount", "between", `[1,10]`, `{"amount":11}`, false},
}

// filterDecisionCases: every single-field row of reference.md's "Filter
// operators" table.
var filterDecisionCases = []filterOpCase{
	// A list of values: any may hold; for not-eq and not-ieq none may equal.
	{"eq with a list holds when one value equals", "name", "eq", `["Acme","Globex"]`, `{"name":"Globex"}`, true},
	{"eq with a list does not hold when no value equals", "name", "eq", `["Acme","Globex"]`, `{"name":"Initech"}`, false},
	{"not-eq with a list does not hold when one value equals", "name", "not-eq", `["Acme","Globex"]`, `{"name":"Globex"}`, false},
	{"not-eq with a list holds when no value equals", "name", "not-eq", `["Acme","Globex"]`, `{"name":"Initech"}`, true},
	{"not-ieq with a list does not hold when one value equals in another case", "name", "not-ieq", `["acme","globex"]`, `{"name":"GLOBEX"}`, false},
	{"gt with a list holds when one value is smaller", "amount", "gt", `[100,5]`, `{"amount":10}`, true},
	{"contains with a list holds when one value is inside", "name", "contains", `["Globex","Acme"]`, `{"name":"Big Acme deal"}`, true},

	// A missing field counts as null.
	{"eq does not hold for a missing field", "name", "eq", `"Acme"`, `{}`, false},
	{"ieq does not hold for a missing field", "name", "ieq", `"Acme"`, `{}`, false},
	{"not-eq holds for a missing field", "name", "not-eq", `"Acme"`, `{}`, true},
	{"not-ieq holds for a missing field", "name", "not-ieq", `"Acme"`, `{}`, true},
	{"contains does not hold for a missing field", "name", "contains", `"A"`, `{}`, false},
	{"starts does not hold for a missing field", "name", "starts", `"A"`, `{}`, false},
	{"ends does not hold for a missing field", "name", "ends", `"A"`, `{}`, false},
	{"icontains does not hold for a missing field", "name", "icontains", `"a"`, `{}`, false},
	{"istarts does not hold for a missing field", "name", "istarts", `"a"`, `{}`, false},
	{"iends does not hold for a missing field", "name", "iends", `"a"`, `{}`, false},
	{"gt does not hold for a missing field", "amount", "gt", `0`, `{}`, false},
	{"gte does not hold for a missing field", "amount", "gte", `0`, `{}`, false},
	{"lt does not hold for a missing field", "amount", "lt", `0`, `{}`, false},
	{"lte does not hold for a missing field", "amount", "lte", `0`, `{}`, false},
	{"between does not hold for a missing field", "amount", "between", `[-1,1]`, `{}`, false},
	{"lt does not hold for a null field", "amount", "lt", `0`, `{"amount":null}`, false},
	{"eq does not hold under a missing parent", "primary_account.name", "eq", `"Acme"`, `{}`, false},
	{"not-eq holds under a null parent", "primary_account.name", "not-eq", `"Acme"`, `{"primary_account":null}`, true},

	// between: [low, high], both ends included.
	{"between includes its low end", "amount", "between", `[1,10]`, `{"amount":1}`, true},
	{"between includes its high end", "amount", "between", `[1,10]`, `{"amount":10}`, true},
	{"between does not hold below the range", "amount", "between", `[1,10]`, `{"amount":0.99}`, false},
	{"between of dates includes the last day", "closing_date", "between", `["2026-01-01","2026-12-31"]`, `{"closing_date":"2026-12-31"}`, true},
	{"between of dates does not hold the day after", "closing_date", "between", `["2026-01-01","2026-12-31"]`, `{"closing_date":"2027-01-01"}`, false},
	{"between compares a numeric string as a number", "amount", "between", `[1,10]`, `{"amount":"5"}`, true},
	{"between with numeric strings compares a number as a number", "amount", "between", `["2","10"]`, `{"amount":9}`, true},

	// null and not-null: a missing field is null; the filter value is ignored.
	{"null holds for a missing field", "closing_date", "null", `true`, `{}`, true},
	{"not-null does not hold for a missing field", "closing_date", "not-null", `true`, `{}`, false},
	{"null ignores a filter value of false", "closing_date", "null", `false`, `{"closing_date":null}`, true},
	{"null ignores a string filter value", "closing_date", "null", `"2026-12-31"`, `{"closing_date":null}`, true},
	{"not-null ignores a null filter value", "closing_date", "not-null", `null`, `{"closing_date":"2026-12-31"}`, true},
	{"null does not hold for an empty string", "description", "null", `true`, `{"description":""}`, false},
	{"not-null holds for zero", "amount", "not-null", `true`, `{"amount":0}`, true},

	// empty: missing, null, "", [] or {}.
	{"empty holds for a missing field", "description", "empty", `true`, `{}`, true},
	{"empty holds for a null field", "description", "empty", `true`, `{"description":null}`, true},
	{"empty holds for an empty list", "tags", "empty", `true`, `{"tags":[]}`, true},
	{"empty holds for an empty object", "value", "empty", `true`, `{"value":{}}`, true},
	{"empty does not hold for a blank string", "description", "empty", `true`, `{"description":" "}`, false},
	{"empty does not hold for zero", "amount", "empty", `true`, `{"amount":0}`, false},
	{"empty does not hold for false", "is_archived", "empty", `true`, `{"is_archived":false}`, false},
	{"empty does not hold for an object with a field", "value", "empty", `true`, `{"value":{"base_value":0}}`, false},
	{"not-empty does not hold for a missing field", "description", "not-empty", `true`, `{}`, false},
	{"not-empty does not hold for an empty list", "tags", "not-empty", `true`, `{"tags":[]}`, false},
	{"not-empty does not hold for an empty object", "value", "not-empty", `true`, `{"value":{}}`, false},
	{"not-empty holds for zero", "amount", "not-empty", `true`, `{"amount":0}`, true},

	// Numbers compare as numbers, and with numeric strings.
	{"1 equals 1.0", "amount", "eq", `1.0`, `{"amount":1}`, true},
	{"1.0 equals 1", "amount", "eq", `1`, `{"amount":1.0}`, true},
	{"1e2 equals 100", "amount", "eq", `100`, `{"amount":1e2}`, true},
	{"the string 90 equals the number 90", "amount", "eq", `90`, `{"amount":"90"}`, true},
	{"the number 90 equals the string 90", "amount", "eq", `"90"`, `{"amount":90}`, true},
	{"the number 90 equals the string 90.0", "amount", "eq", `"90.0"`, `{"amount":90}`, true},
	{"a number does not equal a word", "amount", "eq", `"ninety"`, `{"amount":90}`, false},
	{"not-eq does not hold for the string of an equal number", "amount", "not-eq", `"90"`, `{"amount":90.0}`, false},
	{"10 is greater than 9", "amount", "gt", `9`, `{"amount":10}`, true},
	{"10 is greater than the string 9", "amount", "gt", `"9"`, `{"amount":10}`, true},
	{"the string 10 is greater than 9", "amount", "gt", `9`, `{"amount":"10"}`, true},
	{"10 is not less than the string 9", "amount", "lt", `"9"`, `{"amount":10}`, false},
	{"the string 10 orders before the string 9 as text", "code", "lt", `"9"`, `{"code":"10"}`, true},
	{"the string 10 is not greater than the string 9 as text", "code", "gt", `"9"`, `{"code":"10"}`, false},
	{"-5 is less than 0", "amount", "lt", `0`, `{"amount":-5}`, true},
	{"0.5 is greater than 0.25", "amount", "gt", `0.25`, `{"amount":0.5}`, true},
	{"1e3 is greater than 999", "amount", "gt", `999`, `{"amount":1e3}`, true},
	{"999.5 is less than 1e3", "amount", "lt", `1e3`, `{"amount":999.5}`, true},

	// Dates and times compare as strings.
	{"a later date is greater", "closing_date", "gt", `"2026-06-30"`, `{"closing_date":"2026-12-31"}`, true},
	{"a later date is not less", "closing_date", "lt", `"2026-06-30"`, `{"closing_date":"2026-12-31"}`, false},
	{"the same date is gte", "closing_date", "gte", `"2026-12-31"`, `{"closing_date":"2026-12-31"}`, true},
	{"a date of another year orders by year", "closing_date", "lt", `"2027-01-01"`, `{"closing_date":"2026-12-31"}`, true},
	{"a later time is gte", "modified", "gte", `"2026-12-31T09:59:59"`, `{"modified":"2026-12-31T10:00:00"}`, true},
	{"an earlier time is not gt", "modified", "gt", `"2026-12-31T10:00:01"`, `{"modified":"2026-12-31T10:00:00"}`, false},

	// i* operators fold case with Unicode simple folding.
	{"ieq folds Greek with its final sigma", "name", "ieq", `"σίσυφος"`, `{"name":"ΣΊΣΥΦΟΣ"}`, true},
	{"ieq folds the Kelvin sign to k", "unit", "ieq", `"k"`, `{"unit":"\u212a"}`, true},
	{"ieq folds k to the Kelvin sign", "unit", "ieq", `"\u212a"`, `{"unit":"K"}`, true},
	{"ieq does not fold distinct letters", "name", "ieq", `"σίσυφοι"`, `{"name":"ΣΊΣΥΦΟΣ"}`, false},
	{"not-ieq does not hold for a folded match", "name", "not-ieq", `"σίσυφος"`, `{"name":"ΣΊΣΥΦΟΣ"}`, false},
	{"icontains folds Greek", "name", "icontains", `"σίσυφος"`, `{"name":"Ο ΜΎΘΟΣ ΤΟΥ ΣΊΣΥΦΟΥ ΚΑΙ ΣΊΣΥΦΟΣ"}`, true},
	{"icontains folds the Kelvin sign", "name", "icontains", `"rk"`, `{"name":"PAR\u212a LANE"}`, true},
	{"istarts folds the Kelvin sign", "name", "istarts", `"kel"`, `{"name":"\u212aELVIN"}`, true},
	{"iends folds the Kelvin sign", "name", "iends", `"ark"`, `{"name":"Central PAR\u212a"}`, true},
	{"iends folds Greek", "name", "iends", `"φος"`, `{"name":"ΣΊΣΥΦΟΣ"}`, true},
	{"eq does not fold the Kelvin sign", "unit", "eq", `"K"`, `{"unit":"\u212a"}`, false},

	// contains, starts and ends are case-sensitive.
	{"contains does not fold the Kelvin sign", "name", "contains", `"rk"`, `{"name":"PAR\u212a LANE"}`, false},
	{"starts is case-sensitive", "name", "starts", `"acme"`, `{"name":"Acme deal"}`, false},
	{"ends is case-sensitive", "name", "ends", `"DEAL"`, `{"name":"Acme deal"}`, false},
	{"contains matches a number's text", "phone", "contains", `"555"`, `{"phone":15550100}`, true},

	// true equals "true".
	{"true equals the string true", "is_archived", "eq", `"true"`, `{"is_archived":true}`, true},
	{"the string true equals true", "is_archived", "eq", `true`, `{"is_archived":"true"}`, true},
	{"false does not equal the string true", "is_archived", "eq", `"true"`, `{"is_archived":false}`, false},
	{"false equals false", "is_archived", "eq", `false`, `{"is_archived":false}`, true},
	{"not-eq does not hold for true against the string true", "is_archived", "not-eq", `"true"`, `{"is_archived":true}`, false},
	{"ieq holds for the string TRUE against true", "is_archived", "ieq", `true`, `{"is_archived":"TRUE"}`, true},
	{"eq with null holds for a null field", "closing_date", "eq", `null`, `{"closing_date":null}`, true},

	// A field that is an array.
	{"eq holds when an element equals", "tags", "eq", `"fleet"`, `{"tags":["renewal","fleet"]}`, true},
	{"eq does not hold when no element equals", "tags", "eq", `"q4"`, `{"tags":["renewal","fleet"]}`, false},
	{"eq does not hold for an empty array", "tags", "eq", `"q4"`, `{"tags":[]}`, false},
	{"ieq holds when an element equals in another case", "tags", "ieq", `"FLEET"`, `{"tags":["renewal","fleet"]}`, true},
	{"not-eq does not hold when an element equals", "tags", "not-eq", `"fleet"`, `{"tags":["renewal","fleet"]}`, false},
	{"not-eq holds when no element equals", "tags", "not-eq", `"q4"`, `{"tags":["renewal","fleet"]}`, true},
	{"not-eq with a list does not hold when an element equals any value", "tags", "not-eq", `["q4","renewal"]`, `{"tags":["renewal","fleet"]}`, false},
	{"not-eq holds for an empty array", "tags", "not-eq", `"q4"`, `{"tags":[]}`, true},
	{"not-ieq does not hold when an element equals in another case", "tags", "not-ieq", `"RENEWAL"`, `{"tags":["renewal","fleet"]}`, false},
	{"gt holds when an element is greater", "scores", "gt", `4`, `{"scores":[1,5]}`, true},
	{"gt does not hold when no element is greater", "scores", "gt", `5`, `{"scores":[1,5]}`, false},
	{"between holds when an element is inside", "scores", "between", `[2,4]`, `{"scores":[1,3,5]}`, true},
	{"between does not hold when no element is inside", "scores", "between", `[2,4]`, `{"scores":[1,5]}`, false},
	{"icontains holds when an element contains", "tags", "icontains", `"NEW"`, `{"tags":["renewal","fleet"]}`, true},
	{"starts holds when an element starts so", "tags", "starts", `"fl"`, `{"tags":["renewal","fleet"]}`, true},
	{"null does not hold for an empty array", "tags", "null", `true`, `{"tags":[]}`, false},
	{"null does not hold for an array of nulls", "tags", "null", `true`, `{"tags":[null]}`, false},
	{"not-null holds for an empty array", "tags", "not-null", `true`, `{"tags":[]}`, true},
	{"empty does not hold for an array of an empty string", "tags", "empty", `true`, `{"tags":[""]}`, false},
	{"not-empty holds for an array of an empty string", "tags", "not-empty", `true`, `{"tags":[""]}`, true},
	{"not-empty holds for an array with elements", "tags", "not-empty", `true`, `{"tags":["fleet"]}`, true},
	{"empty does not hold for an array with elements", "tags", "empty", `true`, `{"tags":["fleet"]}`, false},

	// Nested fields are dot paths.
	{"eq holds on a nested field", "primary_account.name", "eq", `"Acme"`, `{"primary_account":{"name":"Acme"}}`, true},
	{"eq does not hold on another nested field", "primary_account.name", "eq", `"Acme"`, `{"primary_account":{"id":"a1"},"name":"Acme"}`, false},
	{"icontains holds on a nested field", "primary_account.name", "icontains", `"acme"`, `{"primary_account":{"name":"ACME Corporation"}}`, true},
	{"gte holds two levels down", "value.base_value", "gte", `1000`, `{"value":{"base_value":1000.0}}`, true},
	{"null holds on a missing nested field", "primary_account.name", "null", `true`, `{"primary_account":{}}`, true},
	{"a path segment is a name, not a wildcard", "cf_a*b", "eq", `"x"`, `{"cf_axb":"x"}`, false},
	{"a path segment with a wildcard character matches its own name", "cf_a*b", "eq", `"x"`, `{"cf_a*b":"x"}`, true},

	// A dot path through an array of objects behaves like an array field.
	{"eq holds when one related object's field equals", "product_relations.product_id", "eq", `"p2"`, `{"product_relations":[{"product_id":"p1"},{"product_id":"p2"}]}`, true},
	{"eq does not hold when no related object's field equals", "product_relations.product_id", "eq", `"p3"`, `{"product_relations":[{"product_id":"p1"},{"product_id":"p2"}]}`, false},
	{"not-eq does not hold when one related object's field equals", "product_relations.product_id", "not-eq", `"p2"`, `{"product_relations":[{"product_id":"p1"},{"product_id":"p2"}]}`, false},
	{"not-eq holds when no related object's field equals", "product_relations.product_id", "not-eq", `"p3"`, `{"product_relations":[{"product_id":"p1"},{"product_id":"p2"}]}`, true},
	{"gt holds when one related object's field is greater", "product_relations.quantity", "gt", `5`, `{"product_relations":[{"quantity":1},{"quantity":10}]}`, true},
	{"not-null holds for a non-empty array of related objects", "product_relations.product_id", "not-null", `true`, `{"product_relations":[{"product_id":"p1"}]}`, true},
	{"null does not hold for an array of related objects", "product_relations.product_id", "null", `true`, `{"product_relations":[{"product_id":"p1"}]}`, false},
	{"empty holds for an empty array of related objects", "product_relations.product_id", "empty", `true`, `{"product_relations":[]}`, true},
	{"not-empty holds for a non-empty array of related objects", "product_relations.product_id", "not-empty", `true`, `{"product_relations":[{"product_id":"p1"}]}`, true},

	// The default operator is eq.
	{"no filter-op means eq, which holds for the same value", "name", "", `"Acme"`, `{"name":"Acme"}`, true},
	{"no filter-op means eq, which is case-sensitive", "name", "", `"Acme"`, `{"name":"ACME"}`, false},
	{"no filter-op means eq, not contains", "name", "", `"Acme"`, `{"name":"Acme deal"}`, false},
	{"no filter-op means eq with a list", "name", "", `["Globex","Acme"]`, `{"name":"Acme"}`, true},
}

// filterLargeIntegerCases: integers beyond float64's 2^53 compare exactly.
var filterLargeIntegerCases = []filterOpCase{
	{"2^53+1 does not equal 2^53", "cf_contract_number", "eq", `9007199254740992`, `{"cf_contract_number":9007199254740993}`, false},
	{"2^53+1 equals itself", "cf_contract_number", "eq", `9007199254740993`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^53+1 is not-eq to 2^53", "cf_contract_number", "not-eq", `9007199254740992`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^53+1 is greater than 2^53", "cf_contract_number", "gt", `9007199254740992`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^53 is less than 2^53+1", "cf_contract_number", "lt", `9007199254740993`, `{"cf_contract_number":9007199254740992}`, true},
	{"2^53+1 is not lte 2^53", "cf_contract_number", "lte", `9007199254740992`, `{"cf_contract_number":9007199254740993}`, false},
	{"the string 2^53+1 does not equal 2^53", "cf_contract_number", "eq", `9007199254740992`, `{"cf_contract_number":"9007199254740993"}`, false},
	{"2^53+1 equals its string", "cf_contract_number", "eq", `"9007199254740993"`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^53+1 is between itself and itself", "cf_contract_number", "between", `[9007199254740993,9007199254740993]`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^53 is not between 2^53+1 and 2^53+2", "cf_contract_number", "between", `[9007199254740993,9007199254740994]`, `{"cf_contract_number":9007199254740992}`, false},
	{"the largest int64 is greater than the one before", "cf_contract_number", "gt", `9223372036854775806`, `{"cf_contract_number":9223372036854775807}`, true},
	{"2^53+1 does not equal 2^53 written with a fraction", "cf_contract_number", "eq", `9007199254740992.0`, `{"cf_contract_number":9007199254740993}`, false},
	{"2^53+1 is greater than 2^53 written with a fraction", "cf_contract_number", "gt", `9007199254740992.0`, `{"cf_contract_number":9007199254740993}`, true},
	{"2^64+1 does not equal 2^64", "cf_contract_number", "eq", `18446744073709551616`, `{"cf_contract_number":18446744073709551617}`, false},
}

// filterWebhook is a registration on every Opportunity event with the given
// Opportunity options; a filter value is JSON text.
func filterWebhook(filter, ops map[string]string, onChange ...string) Webhook {
	var raw map[string]json.RawMessage
	if filter != nil {
		raw = map[string]json.RawMessage{}
		for p, v := range filter {
			raw[p] = json.RawMessage(v)
		}
	}
	return Webhook{
		URL:    filterHookURL,
		Events: []string{"Opportunity.*"},
		Options: Options{Entity: map[string]EntityOptions{
			"Opportunity": {Filter: raw, FilterOp: ops, OnFieldChange: onChange},
		}},
	}
}

func (tc filterOpCase) webhook() Webhook {
	var ops map[string]string
	if tc.op != "" {
		ops = map[string]string{tc.path: tc.op}
	}
	return filterWebhook(map[string]string{tc.path: tc.value}, ops)
}

// requireFires registers w alone and checks whether e fires it.
func requireFires(t *testing.T, w Webhook, e Event, fires bool) {
	t.Helper()
	r := newTestRegistry()
	mustCreate(t, r, w)
	want := []string{}
	if fires {
		want = []string{w.URL}
	}
	if d := cmp.Diff(want, matchURLs(t, NewMatcher(r), e)); d != "" {
		t.Errorf("registrations fired (-want +got):\n%s", d)
	}
}

func runFilterOpCases(t *testing.T, cases []filterOpCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := Event{Name: "Opportunity.Update", Data: json.RawMessage(tc.record)}
			requireFires(t, tc.webhook(), e, tc.holds)
		})
	}
}

func TestFilterOperators(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range filterOperatorCases {
		seen[tc.op] = true
	}
	for _, name := range opNames {
		require.True(t, seen[name], "the table lacks operator %q", name)
	}
	runFilterOpCases(t, filterOperatorCases)
}

func TestFilterDecisions(t *testing.T) {
	runFilterOpCases(t, filterDecisionCases)
}

func TestFilterLargeIntegersCompareExactly(t *testing.T) {
	runFilterOpCases(t, filterLargeIntegerCases)
}

func TestFilterSeveralFieldsMustAllHold(t *testing.T) {
	filter := map[string]string{
		"name":                 `"Acme deal"`,
		"amount":               `1000`,
		"primary_account.name": `"acme"`,
	}
	ops := map[string]string{"amount": "gte", "primary_account.name": "icontains"}
	tests := []struct {
		name   string
		record string
		fires  bool
	}{
		{"all three hold", `{"name":"Acme deal","amount":1500,"primary_account":{"name":"ACME Corp"}}`, true},
		{"the eq fails", `{"name":"Other deal","amount":1500,"primary_account":{"name":"ACME Corp"}}`, false},
		{"the gte fails", `{"name":"Acme deal","amount":999,"primary_account":{"name":"ACME Corp"}}`, false},
		{"the icontains fails", `{"name":"Acme deal","amount":1500,"primary_account":{"name":"Globex"}}`, false},
		{"one field is missing", `{"name":"Acme deal","amount":1500}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := Event{Name: "Opportunity.Update", Data: json.RawMessage(tc.record)}
			requireFires(t, filterWebhook(filter, ops), e, tc.fires)
		})
	}
}

func TestFilterAppliesToItsOwnEntityOnly(t *testing.T) {
	failing := json.RawMessage(`{"id":"r1","name":"Globex"}`)
	passing := json.RawMessage(`{"id":"r1","name":"Acme"}`)
	acme := map[string]json.RawMessage{"name": json.RawMessage(`"Acme"`)}
	tests := []struct {
		name  string
		hook  Webhook
		event Event
		fires bool
	}{
		{
			"an Opportunity filter does not hold back an Account event",
			Webhook{URL: filterHookURL, Events: []string{"Opportunity.*", "Account.*"},
				Options: Options{Entity: map[string]EntityOptions{"Opportunity": {Filter: acme}}}},
			Event{Name: "Account.Update", Data: failing}, true,
		},
		{
			"an Opportunity filter holds back an Opportunity event",
			Webhook{URL: filterHookURL, Events: []string{"Opportunity.*", "Account.*"},
				Options: Options{Entity: map[string]EntityOptions{"Opportunity": {Filter: acme}}}},
			Event{Name: "Opportunity.Update", Data: failing}, false,
		},
		{
			"an Opportunity filter applies to every Opportunity action",
			Webhook{URL: filterHookURL, Events: []string{"*"},
				Options: Options{Entity: map[string]EntityOptions{"Opportunity": {Filter: acme}}}},
			Event{Name: "Opportunity.Won", Data: failing}, false,
		},
		{
			"an Account filter does not hold back an Opportunity event",
			Webhook{URL: filterHookURL, Events: []string{"*"},
				Options: Options{Entity: map[string]EntityOptions{"Account": {Filter: acme}}}},
			Event{Name: "Opportunity.Create", Data: failing}, true,
		},
		{
			"a custom entity's filter applies to its events",
			Webhook{URL: filterHookURL, Events: []string{"CustomEntity.*"},
				Options: Options{Entity: map[string]EntityOptions{"CE_Invoice": {Filter: acme}}}},
			Event{Name: "CustomEntity.Update", CustomEntity: "CE_Invoice", Data: failing}, false,
		},
		{
			"a custom entity's filter lets its passing records through",
			Webhook{URL: filterHookURL, Events: []string{"CustomEntity.*"},
				Options: Options{Entity: map[string]EntityOptions{"CE_Invoice": {Filter: acme}}}},
			Event{Name: "CustomEntity.Update", CustomEntity: "CE_Invoice", Data: passing}, true,
		},
		{
			"a custom entity's filter does not apply to another custom entity",
			Webhook{URL: filterHookURL, Events: []string{"CustomEntity.*"},
				Options: Options{Entity: map[string]EntityOptions{"CE_Invoice": {Filter: acme}}}},
			Event{Name: "CustomEntity.Update", CustomEntity: "CE_Order", Data: failing}, true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			requireFires(t, tc.hook, tc.event, tc.fires)
		})
	}
}

func TestFilterRegistrationRejections(t *testing.T) {
	const prefix = "options.entity.Opportunity."
	one := func(path, value, op string) EntityOptions {
		o := EntityOptions{Filter: map[string]json.RawMessage{path: json.RawMessage(value)}}
		if op != "" {
			o.FilterOp = map[string]string{path: op}
		}
		return o
	}
	tests := []struct {
		name   string
		entity string // "" is Opportunity
		opts   EntityOptions
		field  string // "" when the registration is accepted
	}{
		{"an unknown operator is refused", "", one("value", `1`, "greater"), prefix + "filter-op.value"},
		{"an operator in capitals is refused", "", one("value", `1`, "EQ"), prefix + "filter-op.value"},
		{"an unknown operator of a custom entity names its API name", "CE_Invoice", one("status", `"paid"`, "like"), "options.entity.CE_Invoice.filter-op.status"},
		{"filter-op for a field with no filter is refused", "",
			EntityOptions{Filter: map[string]json.RawMessage{"value": json.RawMessage(`1`)}, FilterOp: map[string]string{"name": "eq"}},
			prefix + "filter-op.name"},
		{"filter-op with no filter at all is refused", "", EntityOptions{FilterOp: map[string]string{"name": "null"}}, prefix + "filter-op.name"},
		{"between with one value is refused", "", one("value", `[1]`, "between"), prefix + "filter.value"},
		{"between with three values is refused", "", one("value", `[1,2,3]`, "between"), prefix + "filter.value"},
		{"between with a value that is not a list is refused", "", one("value", `5`, "between"), prefix + "filter.value"},
		{"a filter value that is an object is refused", "", one("value", `{"gte":1}`, "eq"), prefix + "filter.value"},
		{"an empty object is refused", "", one("value", `{}`, "null"), prefix + "filter.value"},
		{"a list containing an object is refused", "", one("value", `[1,{"a":1}]`, "eq"), prefix + "filter.value"},
		{"a list containing a list is refused", "", one("value", `[[1,2]]`, "eq"), prefix + "filter.value"},
		{"between of two lists is refused", "", one("value", `[[1],[2]]`, "between"), prefix + "filter.value"},
		{"an empty list is refused", "", one("name", `[]`, ""), prefix + "filter.name"},
		{"invalid JSON is refused", "", one("value", `[1,`, "eq"), prefix + "filter.value"},
		{"an unquoted word is refused", "", one("name", `Acme`, "eq"), prefix + "filter.name"},
		{"an empty filter value is refused", "", one("name", ``, "eq"), prefix + "filter.name"},
		{"an empty path component is refused", "", one("a..b", `1`, ""), prefix + "filter.a..b"},
		{"a path ending in a dot is refused", "", one("primary_account.", `1`, "eq"), prefix + "filter.primary_account."},
		{"an empty path component in on-field-change is refused", "",
			EntityOptions{OnFieldChange: []string{"name", "value..base_value"}}, prefix + "on-field-change[1]"},

		{"between with two values is accepted", "", one("value", `[1,2]`, "between"), ""},
		{"between of two dates is accepted", "", one("closing_date", `["2026-01-01","2026-12-31"]`, "between"), ""},
		{"null with any scalar value is accepted", "", one("closing_date", `"ignored"`, "null"), ""},
		{"a list of scalars of mixed types is accepted", "", one("name", `["Acme",1,true,null]`, "eq"), ""},
		{"a nested path is accepted", "", one("primary_account.name", `"Acme"`, "icontains"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			entity := tc.entity
			if entity == "" {
				entity = "Opportunity"
			}
			r := newTestRegistry()
			_, err := r.Create(ctx, "", Webhook{URL: filterHookURL, Events: []string{"*"},
				Options: Options{Entity: map[string]EntityOptions{entity: tc.opts}}})
			list, lerr := r.List(ctx, "")
			require.NoError(t, lerr)
			if tc.field == "" {
				require.NoError(t, err)
				require.Len(t, list, 1)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tc.field, fe.Field, "reason: %s", fe.Reason)
			require.Empty(t, list, "a refused registration was stored")
			e := Event{Name: "Opportunity.Update", Data: json.RawMessage(`{"value":1}`)}
			require.Empty(t, matchURLs(t, NewMatcher(r), e))
		})
	}
}

func TestOnFieldChange(t *testing.T) {
	const record = `{"id":"o1","name":"Acme deal","amount":1000,"value":{"base_value":1000,"currency_id":"EUR"},"tags":["fleet"]}`
	tests := []struct {
		name     string
		event    string // "" is Opportunity.Update
		onChange []string
		filter   map[string]string // eq filters
		previous string            // "" is none
		data     string
		fires    bool
	}{
		{"an Update that changed the field fires", "", []string{"amount"}, nil,
			record, `{"id":"o1","name":"Acme deal","amount":2000}`, true},
		{"an Update that left the field alone does not fire", "", []string{"amount"}, nil,
			`{"id":"o1","name":"Acme","amount":1000}`, `{"id":"o1","name":"Acme deal","amount":1000}`, false},
		{"a Create passes it", "Opportunity.Create", []string{"amount"}, nil,
			record, record, true},
		{"a Won event passes it", "Opportunity.Won", []string{"amount"}, nil,
			record, record, true},
		{"a Delete passes it", "Opportunity.Delete", []string{"amount"}, nil,
			record, record, true},
		{"key order does not count", "", []string{"value"}, nil,
			`{"value":{"base_value":1000,"currency_id":"EUR"}}`, `{"value":{"currency_id":"EUR","base_value":1000}}`, false},
		{"spacing does not count", "", []string{"value"}, nil,
			`{"value":{"base_value":1000,"currency_id":"EUR"}}`, "{\"value\" : {\n  \"base_value\" : 1000 ,\n  \"currency_id\" : \"EUR\"\n}}", false},
		{"1 versus 1.0 does not count", "", []string{"amount"}, nil,
			`{"amount":1}`, `{"amount":1.0}`, false},
		{"1 versus 1e0 inside an object does not count", "", []string{"value"}, nil,
			`{"value":{"base_value":1}}`, `{"value":{"base_value":1e0}}`, false},
		{"a string escape versus its character does not count", "", []string{"name"}, nil,
			`{"name":"caf\u00e9"}`, `{"name":"café"}`, false},
		{"a number becoming its string counts", "", []string{"amount"}, nil,
			`{"amount":1}`, `{"amount":"1"}`, true},
		{"2^53+1 becoming 2^53 counts", "", []string{"amount"}, nil,
			`{"amount":9007199254740993}`, `{"amount":9007199254740992}`, true},
		{"2^53+1 becoming 2^53 written with a fraction counts", "", []string{"amount"}, nil,
			`{"amount":9007199254740993}`, `{"amount":9007199254740992.0}`, true},
		{"a field that appears counts", "", []string{"closing_date"}, nil,
			`{"id":"o1"}`, `{"id":"o1","closing_date":"2026-12-31"}`, true},
		{"a field that appears as null counts", "", []string{"closing_date"}, nil,
			`{"id":"o1"}`, `{"id":"o1","closing_date":null}`, true},
		{"a field that disappears counts", "", []string{"closing_date"}, nil,
			`{"id":"o1","closing_date":"2026-12-31"}`, `{"id":"o1"}`, true},
		{"a field set to null counts", "", []string{"closing_date"}, nil,
			`{"closing_date":"2026-12-31"}`, `{"closing_date":null}`, true},
		{"a field missing before and after does not count", "", []string{"closing_date"}, nil,
			`{"id":"o1"}`, `{"id":"o1","name":"x"}`, false},
		{"a change inside an object counts for the object", "", []string{"value"}, nil,
			`{"value":{"base_value":1000,"currency_id":"EUR"}}`, `{"value":{"base_value":1001,"currency_id":"EUR"}}`, true},
		{"a field added inside an object counts for the object", "", []string{"value"}, nil,
			`{"value":{"base_value":1000}}`, `{"value":{"base_value":1000,"currency_id":"EUR"}}`, true},
		{"a change beside a nested path does not count", "", []string{"value.base_value"}, nil,
			`{"value":{"base_value":1000,"currency_id":"EUR"}}`, `{"value":{"base_value":1000,"currency_id":"USD"}}`, false},
		{"a change at a nested path counts", "", []string{"value.base_value"}, nil,
			`{"value":{"base_value":1000,"currency_id":"EUR"}}`, `{"value":{"base_value":5,"currency_id":"EUR"}}`, true},
		{"a reordered array counts", "", []string{"tags"}, nil,
			`{"tags":["a","b"]}`, `{"tags":["b","a"]}`, true},
		{"an array that grew counts", "", []string{"tags"}, nil,
			`{"tags":["a"]}`, `{"tags":["a","b"]}`, true},
		{"an array of equal numbers does not count", "", []string{"scores"}, nil,
			`{"scores":[1,2]}`, `{"scores":[1.0,2e0]}`, false},
		{"a change through an array of objects counts", "", []string{"product_relations.quantity"}, nil,
			`{"product_relations":[{"quantity":1},{"quantity":2}]}`, `{"product_relations":[{"quantity":1},{"quantity":3}]}`, true},
		{"a change beside a path through an array of objects does not count", "", []string{"product_relations.quantity"}, nil,
			`{"product_relations":[{"quantity":1,"note":"a"}]}`, `{"product_relations":[{"quantity":1,"note":"b"}]}`, false},
		{"an Update with no previous record counts as changed", "", []string{"amount"}, nil,
			"", record, true},
		{"an Update with a null previous record counts as changed", "", []string{"amount"}, nil,
			"null", record, true},
		{"several fields fire when one changed", "", []string{"name", "amount", "closing_date"}, nil,
			`{"name":"Acme","amount":1000}`, `{"name":"Acme","amount":1000,"closing_date":"2026-12-31"}`, true},
		{"several fields do not fire when none changed", "", []string{"name", "amount", "closing_date"}, nil,
			`{"name":"Acme","amount":1000,"stage":"a"}`, `{"name":"Acme","amount":1000,"stage":"b"}`, false},
		{"a filter that holds and a changed field fire", "", []string{"amount"}, map[string]string{"name": `"Acme"`},
			`{"name":"Acme","amount":1000}`, `{"name":"Acme","amount":2000}`, true},
		{"a filter that fails holds back a changed field", "", []string{"amount"}, map[string]string{"name": `"Acme"`},
			`{"name":"Acme","amount":1000}`, `{"name":"Globex","amount":2000}`, false},
		{"a filter that holds does not fire for an unchanged field", "", []string{"amount"}, map[string]string{"name": `"Acme"`},
			`{"name":"Acme","amount":1000}`, `{"name":"Acme","amount":1000.0}`, false},
		{"the filter judges the record after the update", "", []string{"amount"}, map[string]string{"name": `"Acme"`},
			`{"name":"Acme","amount":1000}`, `{"name":"Globex","amount":1000,"x":1}`, false},
		{"a filter still applies to a Create", "Opportunity.Create", []string{"amount"}, map[string]string{"name": `"Acme"`},
			"", `{"name":"Globex","amount":1000}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.event
			if name == "" {
				name = "Opportunity.Update"
			}
			e := Event{Name: name, Data: json.RawMessage(tc.data)}
			if tc.previous != "" {
				e.Previous = json.RawMessage(tc.previous)
			}
			requireFires(t, filterWebhook(tc.filter, nil, tc.onChange...), e, tc.fires)
		})
	}
}

// TestOnFieldChangeKeepsWhatItComparedApart: registrations of one event
// that compare the same field compare it once, and what that keeps of the
// field is not taken for its value by a filter that reads it after.
func TestOnFieldChangeKeepsWhatItComparedApart(t *testing.T) {
	r := newTestRegistry()
	var urls []string
	for i, w := range []Webhook{
		filterWebhook(nil, nil, "status"),
		filterWebhook(map[string]string{"status": `"op"`}, map[string]string{"status": "istarts"}),
		filterWebhook(map[string]string{"status": `"op"`}, map[string]string{"status": "istarts"}, "status"),
		filterWebhook(nil, nil, "status"),
	} {
		w.URL = fmt.Sprintf("%s/%d", filterHookURL, i)
		urls = append(urls, mustCreate(t, r, w).URL)
	}
	m := NewMatcher(r)
	for _, tt := range []struct {
		previous string
		fires    []string
	}{
		{`{"status":"new"}`, urls},
		{`{"status":"open"}`, urls[1:2]},
	} {
		hooks, err := m.Match(Event{Name: "Opportunity.Update", Data: json.RawMessage(`{"status":"open"}`), Previous: json.RawMessage(tt.previous)})
		require.NoError(t, err)
		var got []string
		for _, h := range hooks {
			got = append(got, h.URL)
		}
		require.Equal(t, tt.fires, got, "previous %s", tt.previous)
	}
}

func TestFilterDispatchDeliversOnlyPassingRecords(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	hook := filterWebhook(map[string]string{"amount": `1000`}, map[string]string{"amount": "gte"})
	hook.URL = rcv.URL + "/hook"
	mustCreate(t, r, hook)
	d := newTestDispatcher(t, r, Config{})

	passing := `{"id":"o1","name":"Big deal","amount":5000}`
	dispatch(t, d,
		Event{Name: "Opportunity.Update", Data: json.RawMessage(`{"id":"o2","name":"Small deal","amount":10}`)},
		Event{Name: "Opportunity.Update", Data: json.RawMessage(passing)},
	)

	req := rcv.next(t)
	require.Equal(t, "/hook", req.Path)
	items := decodeItems(t, req.Body)
	require.Len(t, items, 1)
	require.Equal(t, "Opportunity.Update", items[0].Event)
	require.JSONEq(t, passing, string(items[0].Entity))
	require.Empty(t, rcv.drain(), "a second request was sent")
}

// TestFilterFoldsEachEventsOwnText: registrations that fold the same
// field of one event fold it once, and what was folded for one event or
// field is never what another reads, in one Dispatch or in Matches one
// after another.
func TestFilterFoldsEachEventsOwnText(t *testing.T) {
	rcv := newReceiver(t)
	r := newTestRegistry()
	for _, f := range []string{"name", "city"} {
		hook := filterWebhook(map[string]string{f: `"ann"`}, map[string]string{f: "icontains"})
		hook.URL = rcv.URL + "/" + f
		mustCreate(t, r, hook)
	}
	records := []string{
		`{"id":"o1","name":"ANNA","city":"Oslo"}`,   // name
		`{"id":"o2","name":"","city":""}`,           // neither
		`{"id":"o3","name":"Bosse","city":"Annes"}`, // city
		`{"id":"o4","name":"Hannah","city":"x"}`,    // name
		`{"id":"o5","name":"Bo","city":"Bo"}`,       // neither
	}
	m := NewMatcher(r)
	var events []Event
	want := map[string][]string{}
	for i, rec := range records {
		e := Event{Name: "Opportunity.Update", Data: json.RawMessage(rec)}
		events = append(events, e)
		hooks, err := m.Match(e)
		require.NoError(t, err)
		var paths []string
		for _, h := range hooks {
			paths = append(paths, strings.TrimPrefix(h.URL, rcv.URL))
		}
		for _, p := range paths {
			want[p] = append(want[p], fmt.Sprintf("o%d", i+1))
		}
		wantPaths := map[int][]string{0: {"/name"}, 2: {"/city"}, 3: {"/name"}}[i]
		require.Equal(t, wantPaths, paths, "Match of %s", rec)
	}

	d := newTestDispatcher(t, r, Config{})
	dispatch(t, d, events...)
	got := map[string][]string{}
	for _, req := range rcv.drain() {
		for _, it := range decodeItems(t, req.Body) {
			var rec struct{ ID string }
			require.NoError(t, json.Unmarshal(it.Entity, &rec))
			got[req.Path] = append(got[req.Path], rec.ID)
		}
	}
	require.Equal(t, map[string][]string{"/name": {"o1", "o4"}, "/city": {"o3"}}, got)
	require.Equal(t, want, got, "Dispatch fires what Match does")
}

// FuzzFilter compiles a filter of every operator for paths of the record
// and checks that evaluating never panics and that opposite operators
// disagree.
func FuzzFilter(f *testing.F) {
	for _, cases := range [][]filterOpCase{filterOperatorCases, filterDecisionCases, filterLargeIntegerCases} {
		for _, tc := range cases {
			f.Add(tc.record, tc.value, tc.op)
		}
	}
	f.Fuzz(func(t *testing.T, record, val, opName string) {
		if !json.Valid([]byte(record)) {
			return
		}
		data := gjson.Parse(record)
		if !data.IsObject() {
			return
		}
		for _, p := range fuzzFilterPaths(data) {
			eval := func(op, v string) (holds, ok bool) {
				rules, err := compileEntity("options.entity.X", EntityOptions{
					Filter:   map[string]json.RawMessage{p: json.RawMessage(v)},
					FilterOp: map[string]string{p: op},
				})
				if err != nil {
					return false, false
				}
				return rules.holds(&fields{data: data}, &fields{}, false), true
			}
			eval(opName, val) // must not panic, whatever the operator

			complement := func(a, b string) {
				x, okA := eval(a, val)
				y, okB := eval(b, val)
				if okA != okB {
					t.Fatalf("%s and %s disagree on whether filter %q on %q is valid", a, b, val, p)
				}
				if okA && x == y {
					t.Fatalf("%s and %s both %v for filter %q on %q of %s", a, b, x, val, p, record)
				}
			}
			implies := func(a, b string, v string) {
				x, okA := eval(a, v)
				y, okB := eval(b, v)
				if okA && okB && x && !y {
					t.Fatalf("%s holds but %s does not for filter %q on %q of %s", a, b, v, p, record)
				}
			}
			complement("null", "not-null")
			complement("empty", "not-empty")
			if !fuzzFilterArrayAlong(data, p) {
				complement("eq", "not-eq")
				complement("ieq", "not-ieq")
			}
			implies("eq", "ieq", val)
			implies("gt", "gte", val)
			implies("lt", "lte", val)

			// An update that changed nothing never counts as a change.
			if rules, err := compileEntity("options.entity.X", EntityOptions{OnFieldChange: []string{p}}); err == nil &&
				rules.holds(&fields{data: data}, &fields{data: data}, true) {
				t.Fatalf("an update that changed nothing counts as a change of %q in %s", p, record)
			}

			if !json.Valid([]byte(val)) {
				continue
			}
			fv := gjson.Parse(val)
			if fv.IsArray() || fv.IsObject() || fuzzFilterArrayAlong(data, p) {
				continue
			}
			// For one value: between [v, v] is gte v and lte v.
			b, okB := eval("between", "["+val+","+val+"]")
			ge, _ := eval("gte", val)
			le, _ := eval("lte", val)
			if okB && b != (ge && le) {
				t.Fatalf("between [v, v] is %v, gte and lte are %v and %v, for v = %s on %q of %s", b, ge, le, val, p, record)
			}
			// For text against text, the string operators nest.
			field := fuzzFilterGet(data, p)
			if field.Type != gjson.String || fv.Type != gjson.String || !utf8.ValidString(field.Str) || !utf8.ValidString(fv.Str) {
				continue
			}
			for _, pair := range [][2]string{
				{"eq", "starts"}, {"eq", "ends"}, {"starts", "contains"}, {"ends", "contains"},
				{"contains", "icontains"}, {"starts", "istarts"}, {"ends", "iends"},
				{"ieq", "istarts"}, {"ieq", "iends"}, {"istarts", "icontains"}, {"iends", "icontains"},
			} {
				implies(pair[0], pair[1], val)
			}
		}
	})
}

// fuzzFilterPaths returns the paths to try on a record: two fixed ones, its
// first fields, and the fields of its first nested objects (of an array's
// first element), so that paths through objects and arrays are tried.
func fuzzFilterPaths(data gjson.Result) []string {
	const most = 10
	paths := []string{"f", "f.g"}
	data.ForEach(func(k, v gjson.Result) bool {
		paths = append(paths, k.Str)
		sub := v
		if v.IsArray() {
			sub = v.Get("0")
		}
		if sub.IsObject() {
			sub.ForEach(func(k2, _ gjson.Result) bool {
				paths = append(paths, k.Str+"."+k2.Str)
				return len(paths) < most
			})
		}
		return len(paths) < most
	})
	return paths
}

// fuzzFilterArrayAlong reports whether an array lies on p in data, which
// makes the field an array field.
func fuzzFilterArrayAlong(data gjson.Result, p string) bool {
	v := data
	for _, k := range strings.Split(p, ".") {
		switch {
		case v.IsArray():
			return true
		case !v.IsObject():
			return false
		}
		v = v.Get(gjson.Escape(k))
	}
	return v.IsArray()
}

// fuzzFilterGet returns the value at p, when no array lies on it.
func fuzzFilterGet(data gjson.Result, p string) gjson.Result {
	v := data
	for _, k := range strings.Split(p, ".") {
		if !v.IsObject() {
			return gjson.Result{}
		}
		v = v.Get(gjson.Escape(k))
	}
	return v
}

// The benchmarks decide one realistic filter on a ~2 KB Opportunity: an eq
// on a string, a gte on a number and an icontains on a nested path.
var filterBenchOptions = EntityOptions{
	Filter: map[string]json.RawMessage{
		"step_id":              json.RawMessage(`"b3a1c9d2-4e5f-4a6b-8c7d-9e0f1a2b3c4d"`),
		"probability":          json.RawMessage(`50`),
		"primary_account.name": json.RawMessage(`"acme"`),
	},
	FilterOp: map[string]string{"probability": "gte", "primary_account.name": "icontains"},
}

func filterBenchRecord(b *testing.B) []byte {
	b.Helper()
	record, err := os.ReadFile("testdata/opportunity.json")
	require.NoError(b, err)
	return record
}

func BenchmarkFilter(b *testing.B) {
	record := string(filterBenchRecord(b))
	rules, err := compileEntity("options.entity.Opportunity", filterBenchOptions)
	require.NoError(b, err)
	require.True(b, rules.holds(&fields{data: gjson.Parse(record)}, &fields{}, false))
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	var data, none fields // reused, as Match and Dispatch reuse theirs
	for b.Loop() {
		if data.reset(gjson.Parse(record)); !rules.holds(&data, &none, false) {
			b.Fatal("the filter does not hold")
		}
	}
}

// BenchmarkFilterDecodeBaseline is the same decision the obvious way:
// decode the record into a map and compare by hand.
func BenchmarkFilterDecodeBaseline(b *testing.B) {
	record := filterBenchRecord(b)
	decide := func() bool {
		var m map[string]any
		if err := json.Unmarshal(record, &m); err != nil {
			b.Fatal(err)
		}
		step, _ := m["step_id"].(string)
		prob, _ := m["probability"].(float64)
		acct, _ := m["primary_account"].(map[string]any)
		name, _ := acct["name"].(string)
		return step == "b3a1c9d2-4e5f-4a6b-8c7d-9e0f1a2b3c4d" && prob >= 50 &&
			strings.Contains(strings.ToLower(name), "acme")
	}
	require.True(b, decide())
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	for b.Loop() {
		if !decide() {
			b.Fatal("the filter does not hold")
		}
	}
}

// BenchmarkMatchFiltered matches an Opportunity.Update against 1000
// registrations, 10 of which listen to it with the filter.
func BenchmarkMatchFiltered(b *testing.B) {
	record := filterBenchRecord(b)
	var others []string
	for _, name := range strings.Fields(catalogue) {
		if !strings.HasPrefix(name, "Opportunity.") && name != "*" {
			others = append(others, name)
		}
	}
	r := newTestRegistry()
	ctx := context.Background()
	for i := range 1000 {
		w := Webhook{URL: filterHookURL, Events: []string{others[i%len(others)]}}
		if i%100 == 0 {
			w.Events = []string{"Opportunity.Update"}
			w.Options.Entity = map[string]EntityOptions{"Opportunity": filterBenchOptions}
		}
		_, err := r.Create(ctx, w.Space, w)
		require.NoError(b, err)
	}
	m := NewMatcher(r)
	e := Event{Name: "Opportunity.Update", Data: record}
	hooks, err := m.Match(e)
	require.NoError(b, err)
	require.Len(b, hooks, 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Match(e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFilterIContainsLargeField bounds what a registration can cost
// per event: icontains of a 1 KiB value in a 64 KiB field stays linear.
func BenchmarkFilterIContainsLargeField(b *testing.B) {
	field := strings.Repeat("Lorem ipsum dolor sit amet ", 64<<10/27)
	value := strings.Repeat("x", 1<<10)
	record, err := json.Marshal(map[string]string{"description": field})
	require.NoError(b, err)
	rules, err := compileEntity("options.entity.X", EntityOptions{
		Filter:   map[string]json.RawMessage{"description": json.RawMessage(`"` + value + `"`)},
		FilterOp: map[string]string{"description": "icontains"},
	})
	require.NoError(b, err)
	rec := gjson.ParseBytes(record)
	b.SetBytes(int64(len(record)))
	b.ReportAllocs()
	for b.Loop() {
		if rules.holds(&fields{data: rec}, &fields{}, false) {
			b.Fatal("matched")
		}
	}
}
