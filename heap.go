package webhook

// heapElem is what a minHeap holds: something ordered that remembers its
// place, so that it can be removed or moved without a search.
type heapElem[T any] interface {
	before(T) bool
	setIndex(int)
}

// minHeap is a binary min-heap, smallest first. It is container/heap
// without the interface conversions and dynamic calls on every swap.
type minHeap[T heapElem[T]] []T

func (h *minHeap[T]) push(x T) {
	*h = append(*h, x)
	x.setIndex(len(*h) - 1)
	h.up(len(*h) - 1)
}

// remove takes out and returns the element at i.
func (h *minHeap[T]) remove(i int) T {
	s := *h
	last := len(s) - 1
	x := s[i]
	if i != last {
		s[i] = s[last]
		s[i].setIndex(i)
	}
	var zero T
	s[last] = zero // no stale pointer in the spare capacity
	*h = s[:last]
	if i != last {
		h.fix(i)
	}
	x.setIndex(-1)
	return x
}

// fix restores the order after the element at i changed.
func (h minHeap[T]) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h minHeap[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(h[p]) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

// down reports whether the element at i moved.
func (h minHeap[T]) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if r := c + 1; r < len(h) && h[r].before(h[c]) {
			c = r
		}
		if !h[c].before(h[i]) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h minHeap[T]) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].setIndex(i)
	h[j].setIndex(j)
}
