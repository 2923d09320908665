package identity

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// maxBatchKeys is the most keys one BatchGetItem reads; maxTransactItems the
// most items one TransactWriteItems writes.
const (
	maxBatchKeys     = 100
	maxTransactItems = 100
)

// LinkMany links many sightings, as Link does each, with the reads and
// writes of those independent of each other shared: one consistent read of
// all their markers, one of the people those name, and transactions that
// each carry many sightings' writes, under the same conditions Link's own
// writes have. A sighting that shares an identity or a person with another
// of the batch, that merges people or carries a session key, or whose
// shared transaction loses a race goes through Link on its own, from a
// fresh read. Results and errors are in the order of ss; a sighting has
// either a result or an error. Merges and conflicts are counted as Link
// counts them.
func (st *Store) LinkMany(ctx context.Context, ss []Sighting) ([]Result, []error) {
	results := make([]Result, len(ss))
	errs := make([]error, len(ss))
	var solo []int // link one by one

	// A key named by two sightings of the batch: decide cannot see the
	// other sighting's write, so both go alone.
	uses := map[Key]int{}
	for i, s := range ss {
		if errs[i] = s.validate(); errs[i] != nil {
			continue
		}
		for _, k := range s.Keys() {
			uses[k]++
		}
	}
	var batch []int
	for i, s := range ss {
		if errs[i] != nil {
			continue
		}
		shared := false
		for _, k := range s.Keys() {
			shared = shared || uses[k] > 1
		}
		if shared {
			solo = append(solo, i)
		} else {
			batch = append(batch, i)
		}
	}

	owners, people, err := st.readMany(ctx, ss, batch)
	if err != nil {
		// A person moved between the reads (errRace) or the store failed:
		// Link retries or reports per sighting.
		solo = append(solo, batch...)
		batch = nil
	}
	// Two sightings that point at one person would both write it.
	holders := map[string]int{}
	for _, i := range batch {
		for uid := range uidsOf(ss[i], owners) {
			holders[uid]++
		}
	}

	type pending struct {
		i   int
		c   change
		ops []types.TransactWriteItem
	}
	var writes []pending
	now := st.Now()
	for _, i := range batch {
		s := ss[i]
		mine := uidsOf(s, owners)
		alone := false
		ps := make(map[string]Person, len(mine))
		for uid := range mine {
			alone = alone || holders[uid] > 1
			ps[uid] = people[uid]
		}
		if alone {
			solo = append(solo, i)
			continue
		}
		own := make(map[Key]string, len(mine))
		for _, k := range s.Keys() {
			if uid, ok := owners[k]; ok {
				own[k] = uid
			}
		}
		c, err := decide(s, own, ps, st.NewUID(), now)
		switch {
		case err != nil:
			errs[i] = err
			st.count(s, Result{}, err)
			continue
		case c.outcome == Merged || c.sessions != nil:
			solo = append(solo, i)
			continue
		case !c.write && len(c.newKeys) == 0:
			results[i] = Result{Person: c.person, Outcome: c.outcome}
			continue
		}
		ops, err := st.ops(c)
		if err != nil {
			errs[i] = err
			continue
		}
		writes = append(writes, pending{i, c, ops})
	}

	// Pack the writes into as few transactions as the item limit allows.
	for len(writes) > 0 {
		n, items := 0, 0
		for n < len(writes) && items+len(writes[n].ops) <= maxTransactItems {
			items += len(writes[n].ops)
			n++
		}
		group := writes[:n]
		writes = writes[n:]
		var ops []types.TransactWriteItem
		for _, w := range group {
			ops = append(ops, w.ops...)
		}
		err := st.commit(ctx, ops)
		for _, w := range group {
			switch {
			case err == nil:
				res := Result{Person: w.c.person, Outcome: w.c.outcome}
				if w.c.write {
					res.Person.Version++
				}
				results[w.i] = res
			case errors.Is(err, errRace):
				solo = append(solo, w.i)
			default:
				errs[w.i] = err
			}
		}
	}

	for _, i := range solo {
		results[i], errs[i] = st.Link(ctx, ss[i])
	}
	return results, errs
}

// readMany reads, consistently, the markers of the batch's sightings and
// the people they name.
func (st *Store) readMany(ctx context.Context, ss []Sighting, batch []int) (map[Key]string, map[string]Person, error) {
	var keys []Key
	for _, i := range batch {
		keys = append(keys, ss[i].Keys()...)
	}
	owners := make(map[Key]string, len(keys))
	for len(keys) > 0 {
		n := min(len(keys), maxBatchKeys)
		got, err := st.owners(ctx, keys[:n])
		if err != nil {
			return nil, nil, err
		}
		for k, uid := range got {
			owners[k] = uid
		}
		keys = keys[n:]
	}
	var uids []string
	seen := map[string]bool{}
	for _, uid := range owners {
		if !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	people := make(map[string]Person, len(uids))
	for len(uids) > 0 {
		n := min(len(uids), maxBatchKeys)
		part := make(map[string]Person, n)
		for _, uid := range uids[:n] {
			part[uid] = Person{}
		}
		if err := st.people(ctx, part); err != nil {
			return nil, nil, err
		}
		for uid, p := range part {
			people[uid] = p
		}
		uids = uids[n:]
	}
	return owners, people, nil
}

// uidsOf is the set of people s's keys point to.
func uidsOf(s Sighting, owners map[Key]string) map[string]bool {
	out := map[string]bool{}
	for _, k := range s.Keys() {
		if uid, ok := owners[k]; ok {
			out[uid] = true
		}
	}
	return out
}
