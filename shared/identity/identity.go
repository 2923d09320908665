// Package identity keeps one person per WeChat user across every mini
// program, official account, website app and mobile app, and the business's
// own user ids. Identities arrive in any order (login, follow, OAuth, open
// data, backfill) and Link folds each sighting into the one person it
// belongs to, creating, attaching or merging. A verified phone number is a
// lookup on the person (VerifyPhone, ByPhone), never a reason to merge.
//
// The rules live in this file as plain Go; store.go holds the DynamoDB items,
// conditions and transactions that make them hold under concurrency;
// phone.go holds the phone number's rule and its items.
package identity

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Kind is the kind of an identity value.
type Kind string

// The identity kinds. Openids are scoped to an app; unionid and external_id
// are global.
const (
	KindMP       Kind = "MP"    // mini-program openid
	KindOA       Kind = "OA"    // official-account openid
	KindWeb      Kind = "WEB"   // website app openid (QR login, snsapi_login)
	KindMobile   Kind = "APP"   // mobile app openid (the app SDK's login)
	KindUnion    Kind = "UNION" // open-platform unionid
	KindExternal Kind = "EXT"   // the business's own user id
)

// Key names one identity value. Each key belongs to at most one person.
type Key struct {
	Kind  Kind
	AppID string // for the openid kinds (MP, OA, WEB, APP) only
	Value string
}

// MPKey is the key of a mini-program openid.
func MPKey(appid, openid string) Key { return Key{KindMP, appid, openid} }

// OAKey is the key of an official-account openid.
func OAKey(appid, openid string) Key { return Key{KindOA, appid, openid} }

// WebKey is the key of a website app openid.
func WebKey(appid, openid string) Key { return Key{KindWeb, appid, openid} }

// MobileKey is the key of a mobile app openid.
func MobileKey(appid, openid string) Key { return Key{KindMobile, appid, openid} }

// UnionKey is the key of a unionid.
func UnionKey(unionid string) Key { return Key{Kind: KindUnion, Value: unionid} }

// ExternalKey is the key of a business user id.
func ExternalKey(id string) Key { return Key{Kind: KindExternal, Value: id} }

func (k Key) String() string {
	if k.AppID != "" {
		return string(k.Kind) + "#" + k.AppID + "#" + k.Value
	}
	return string(k.Kind) + "#" + k.Value
}

// Person is one human as wxbridge knows them.
type Person struct {
	UID        string                 `dynamodbav:"uid"`
	UnionID    string                 `dynamodbav:"unionid,omitempty"`
	ExternalID string                 `dynamodbav:"external_id,omitempty"`
	MP         map[string]MPIdentity  `dynamodbav:"mp,omitempty"`  // by mini-program appid
	OA         map[string]OAIdentity  `dynamodbav:"oa,omitempty"`  // by official-account appid
	Web        map[string]AppIdentity `dynamodbav:"web,omitempty"` // by website appid
	Mobile     map[string]AppIdentity `dynamodbav:"app,omitempty"` // by mobile appid
	// Phone is the number the person verified last, if any (VerifyPhone).
	Phone     *Phone    `dynamodbav:"phone,omitempty"`
	CreatedAt time.Time `dynamodbav:"created_at"`
	UpdatedAt time.Time `dynamodbav:"updated_at"`
	// MergedFrom lists the uids folded into this person, so that references
	// to them (jobs addressed by uid, old sessions) still resolve.
	MergedFrom []string `dynamodbav:"merged_from,omitempty"`
	// Version increases with every write; writes are conditional on it.
	Version int64 `dynamodbav:"version"`
}

// MPIdentity is the person's identity in one mini program.
type MPIdentity struct {
	OpenID    string    `dynamodbav:"openid"`
	FirstSeen time.Time `dynamodbav:"first_seen"`
}

// AppIdentity is the person's identity in one website or mobile app.
type AppIdentity struct {
	OpenID    string    `dynamodbav:"openid"`
	FirstSeen time.Time `dynamodbav:"first_seen"`
}

// OAIdentity is the person's identity in one official account, with their
// follow state. Neither time set means the follow state is not known yet
// (an OAuth visitor who never followed or unfollowed in our sight).
type OAIdentity struct {
	OpenID         string     `dynamodbav:"openid"`
	FirstSeen      time.Time  `dynamodbav:"first_seen"`
	Subscribed     bool       `dynamodbav:"subscribed"`
	SubscribedAt   *time.Time `dynamodbav:"subscribed_at,omitempty"`
	UnsubscribedAt *time.Time `dynamodbav:"unsubscribed_at,omitempty"`
	Scene          string     `dynamodbav:"subscribe_scene,omitempty"`
	// SeenAt orders what is learnt within the second of the last change,
	// on wxbridge's clock: when user/info was asked for the recorded state
	// (Follow.Seen), or when an event's own word was recorded (user/info
	// asked after that answers after the event).
	SeenAt *time.Time `dynamodbav:"follow_seen_at,omitempty"`
}

// Keys lists every identity key the person holds.
func (p Person) Keys() []Key {
	var ks []Key
	for app, id := range p.MP {
		ks = append(ks, MPKey(app, id.OpenID))
	}
	for app, id := range p.OA {
		ks = append(ks, OAKey(app, id.OpenID))
	}
	for app, id := range p.Web {
		ks = append(ks, WebKey(app, id.OpenID))
	}
	for app, id := range p.Mobile {
		ks = append(ks, MobileKey(app, id.OpenID))
	}
	if p.UnionID != "" {
		ks = append(ks, UnionKey(p.UnionID))
	}
	if p.ExternalID != "" {
		ks = append(ks, ExternalKey(p.ExternalID))
	}
	slices.SortFunc(ks, func(a, b Key) int { return strings.Compare(a.String(), b.String()) })
	return ks
}

// OpenID returns the person's openid in the app appid, whatever its kind.
func (p Person) OpenID(appid string) (Kind, string, bool) {
	if id, ok := p.MP[appid]; ok {
		return KindMP, id.OpenID, true
	}
	if id, ok := p.OA[appid]; ok {
		return KindOA, id.OpenID, true
	}
	if id, ok := p.Web[appid]; ok {
		return KindWeb, id.OpenID, true
	}
	if id, ok := p.Mobile[appid]; ok {
		return KindMobile, id.OpenID, true
	}
	return "", "", false
}

// Linked reports whether the person is known both in a mini program and in
// an official account.
func (p Person) Linked() bool { return len(p.MP) > 0 && len(p.OA) > 0 }

// FollowsOA reports whether the person follows any official account we know.
func (p Person) FollowsOA() bool {
	for _, oa := range p.OA {
		if oa.Subscribed {
			return true
		}
	}
	return false
}

// Sighting is what one event tells us about one user: identities seen
// together, and optionally a change of follow state or a business binding.
type Sighting struct {
	MP         *MPSighting
	OA         *OASighting
	Web        *AppSighting // a website app's QR login
	Mobile     *AppSighting // a mobile app's SDK login
	UnionID    string
	ExternalID string
	// At is when the platform saw it; zero means now.
	At time.Time
	// Source says what revealed it. The store counts the merges and
	// conflicts a sighting causes by source.
	Source Source
}

// Source is what revealed a sighting: the label of the Merges and
// LinkConflicts metrics.
type Source string

// Sources of sightings.
const (
	SourceLogin    Source = "login"     // mini-program login (jscode2session)
	SourceOpenData Source = "open_data" // unionid decrypted from the mini program's encryptedData
	SourceOAuth    Source = "oauth"     // H5 web OAuth
	SourcePush     Source = "push"      // server push: follow, unfollow, QR scan
	SourceBackfill Source = "backfill"  // follower backfill (user/info/batchget)
	SourceWebLogin Source = "web_login" // website app QR login (snsapi_login)
	SourceAppLogin Source = "app_login" // mobile app SDK login
	SourcePhone    Source = "phone"     // phone number verification (getuserphonenumber)
)

// label is the metric label of s: "unspecified" when the caller named none.
func (s Source) label() string {
	if s == "" {
		return "unspecified"
	}
	return string(s)
}

// MPSighting is a mini-program identity, with the session key from the
// login that revealed it (empty when the sighting is not a login).
type MPSighting struct {
	AppID, OpenID string
	SessionKey    string
}

// AppSighting is a website or mobile app identity.
type AppSighting struct {
	AppID, OpenID string
}

// OASighting is an official-account identity, with a follow change when the
// sighting is a follow or unfollow.
type OASighting struct {
	AppID, OpenID string
	Follow        *Follow
}

// Follow is a subscribe or unsubscribe seen at a time.
type Follow struct {
	Subscribed bool
	// At is when the platform changed the state (a push's CreateTime, in
	// whole seconds). Follow state moves forward in At only.
	At    time.Time
	Scene string
	// Seen, when set, says the state is the platform's answer (user/info's
	// subscribe) to a call made at Seen, rather than an event's own word.
	// Only such an answer, asked after the recorded state was last known
	// to hold, changes the state within the second of the last change.
	Seen time.Time
}

// ErrInvalid reports a sighting that names no identity or a malformed one.
var ErrInvalid = errors.New("identity: invalid sighting")

// Keys lists the identity keys the sighting names.
func (s Sighting) Keys() []Key {
	var ks []Key
	if s.MP != nil {
		ks = append(ks, MPKey(s.MP.AppID, s.MP.OpenID))
	}
	if s.OA != nil {
		ks = append(ks, OAKey(s.OA.AppID, s.OA.OpenID))
	}
	if s.Web != nil {
		ks = append(ks, WebKey(s.Web.AppID, s.Web.OpenID))
	}
	if s.Mobile != nil {
		ks = append(ks, MobileKey(s.Mobile.AppID, s.Mobile.OpenID))
	}
	if s.UnionID != "" {
		ks = append(ks, UnionKey(s.UnionID))
	}
	if s.ExternalID != "" {
		ks = append(ks, ExternalKey(s.ExternalID))
	}
	return ks
}

func (s Sighting) validate() error {
	if s.MP == nil && s.OA == nil && s.Web == nil && s.Mobile == nil && s.UnionID == "" {
		return fmt.Errorf("%w: no WeChat identity", ErrInvalid)
	}
	if s.MP != nil && (s.MP.AppID == "" || s.MP.OpenID == "") {
		return fmt.Errorf("%w: mini-program identity needs appid and openid", ErrInvalid)
	}
	if s.OA != nil && (s.OA.AppID == "" || s.OA.OpenID == "") {
		return fmt.Errorf("%w: official-account identity needs appid and openid", ErrInvalid)
	}
	if s.Web != nil && (s.Web.AppID == "" || s.Web.OpenID == "") {
		return fmt.Errorf("%w: website app identity needs appid and openid", ErrInvalid)
	}
	if s.Mobile != nil && (s.Mobile.AppID == "" || s.Mobile.OpenID == "") {
		return fmt.Errorf("%w: mobile app identity needs appid and openid", ErrInvalid)
	}
	for _, k := range s.Keys() {
		if strings.ContainsRune(k.Value, '#') || strings.ContainsRune(k.AppID, '#') {
			return fmt.Errorf("%w: %s value contains '#'", ErrInvalid, k.Kind)
		}
	}
	return nil
}

// ErrConflict reports identities that cannot belong to one person: two
// different external ids, unionids, or openids in the same app. Link refuses
// them and writes nothing.
var ErrConflict = errors.New("identity: conflicting identities")

// ConflictError says which field conflicts and between which people. It
// carries no identity values.
type ConflictError struct {
	Field string   // "external_id", "unionid", "mp_openid", "oa_openid", "web_openid" or "app_openid"
	UIDs  []string // the people involved, when more than one
}

func (e *ConflictError) Error() string {
	if len(e.UIDs) > 1 {
		return fmt.Sprintf("identity: conflicting %s between people %s", e.Field, strings.Join(e.UIDs, ", "))
	}
	return fmt.Sprintf("identity: conflicting %s", e.Field)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Refused reports whether Link refused the sighting itself (ErrInvalid,
// ErrConflict): linking it again will be refused again. Any other failure
// (contention, the table) may pass.
func Refused(err error) bool {
	return errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict)
}

// Outcome says what Link did.
type Outcome string

// Link outcomes.
const (
	Unchanged Outcome = "unchanged" // everything was known already
	Created   Outcome = "created"   // a new person
	Attached  Outcome = "attached"  // new identities or state on one person
	Merged    Outcome = "merged"    // two or more people became one
)

// Result is what Link returns.
type Result struct {
	Person  Person
	Outcome Outcome
	// Merged lists the uids folded into Person by this call.
	Merged []string
}

// change is the decision for one sighting, computed from a consistent read
// and applied as one conditional write (or none).
type change struct {
	outcome  Outcome
	person   Person   // the survivor's new state; Version is the one read
	create   bool     // person is new
	write    bool     // person must be written
	retired  []Person // people merged into person, as read
	newKeys  []Key    // markers to create
	moved    []movedKey
	sessions *MPSighting // session key to record on the MP marker
}

type movedKey struct {
	key  Key
	from string
}

// decide computes how sighting s changes the people its keys point to.
// owners maps each of the sighting's keys that has a marker to its uid;
// people holds those uids' current items.
func decide(s Sighting, owners map[Key]string, people map[string]Person, newUID string, now time.Time) (change, error) {
	at := s.At
	if at.IsZero() {
		at = now
	}
	var c change
	if s.MP != nil && s.MP.SessionKey != "" {
		c.sessions = s.MP
	}
	uids := make([]string, 0, len(people))
	for uid := range people {
		uids = append(uids, uid)
	}
	// ULIDs sort by creation: the oldest person survives a merge, so the
	// same set of people always merges the same way.
	slices.Sort(uids)

	var p Person
	switch len(uids) {
	case 0:
		p = Person{UID: newUID, CreatedAt: at}
		c.create, c.write, c.outcome = true, true, Created
	default:
		p = clonePerson(people[uids[0]])
		c.outcome = Unchanged
		for _, uid := range uids[1:] {
			other := people[uid]
			if err := absorb(&p, other); err != nil {
				return change{}, err
			}
			c.retired = append(c.retired, other)
			for _, k := range other.Keys() {
				c.moved = append(c.moved, movedKey{k, other.UID})
			}
		}
		if len(c.retired) > 0 {
			c.write, c.outcome = true, Merged
		}
	}
	changed, err := apply(&p, s, at, now)
	if err != nil {
		var ce *ConflictError
		if errors.As(err, &ce) {
			ce.UIDs = uids
		}
		return change{}, err
	}
	if changed && !c.write {
		c.write, c.outcome = true, Attached
	}
	for _, k := range s.Keys() {
		if _, ok := owners[k]; !ok {
			c.newKeys = append(c.newKeys, k)
		}
	}
	if c.write {
		p.UpdatedAt = now
	}
	c.person = p
	return c, nil
}

// absorb folds other into p, refusing identities that cannot be one person.
func absorb(p *Person, other Person) error {
	if err := sameOrEmpty("unionid", &p.UnionID, other.UnionID); err != nil {
		return err
	}
	if err := sameOrEmpty("external_id", &p.ExternalID, other.ExternalID); err != nil {
		return err
	}
	for app, id := range other.MP {
		if mine, ok := p.MP[app]; ok && mine.OpenID != id.OpenID {
			return &ConflictError{Field: "mp_openid"}
		}
		if p.MP == nil {
			p.MP = map[string]MPIdentity{}
		}
		if _, ok := p.MP[app]; !ok {
			p.MP[app] = id
		}
	}
	for app, id := range other.OA {
		if mine, ok := p.OA[app]; ok && mine.OpenID != id.OpenID {
			return &ConflictError{Field: "oa_openid"}
		}
		if p.OA == nil {
			p.OA = map[string]OAIdentity{}
		}
		if _, ok := p.OA[app]; !ok {
			p.OA[app] = id
		}
	}
	if err := absorbApps(&p.Web, other.Web, "web_openid"); err != nil {
		return err
	}
	if err := absorbApps(&p.Mobile, other.Mobile, "app_openid"); err != nil {
		return err
	}
	// A person keeps one number: the one verified last. The other's
	// marker then resolves to a person who does not hold it (ByPhone).
	if other.Phone != nil && (p.Phone == nil || other.Phone.VerifiedAt.After(p.Phone.VerifiedAt)) {
		ph := *other.Phone
		p.Phone = &ph
	}
	if other.CreatedAt.Before(p.CreatedAt) {
		p.CreatedAt = other.CreatedAt
	}
	p.MergedFrom = append(p.MergedFrom, other.UID)
	p.MergedFrom = append(p.MergedFrom, other.MergedFrom...)
	return nil
}

// absorbApps folds other's website or mobile app identities into mine.
func absorbApps(mine *map[string]AppIdentity, other map[string]AppIdentity, field string) error {
	for app, id := range other {
		have, ok := (*mine)[app]
		switch {
		case ok && have.OpenID != id.OpenID:
			return &ConflictError{Field: field}
		case ok:
			continue
		}
		if *mine == nil {
			*mine = map[string]AppIdentity{}
		}
		(*mine)[app] = id
	}
	return nil
}

// attachApp records a website or mobile app identity seen at at, and
// reports whether it is new.
func attachApp(mine *map[string]AppIdentity, s *AppSighting, at time.Time, field string) (bool, error) {
	if s == nil {
		return false, nil
	}
	id, ok := (*mine)[s.AppID]
	switch {
	case ok && id.OpenID != s.OpenID:
		return false, &ConflictError{Field: field}
	case ok:
		return false, nil
	}
	if *mine == nil {
		*mine = map[string]AppIdentity{}
	}
	(*mine)[s.AppID] = AppIdentity{OpenID: s.OpenID, FirstSeen: at}
	return true, nil
}

// apply records what the sighting says on p and reports whether p changed.
func apply(p *Person, s Sighting, at, now time.Time) (bool, error) {
	changed := false
	if s.UnionID != "" {
		before := p.UnionID
		if err := sameOrEmpty("unionid", &p.UnionID, s.UnionID); err != nil {
			return false, err
		}
		changed = changed || before != p.UnionID
	}
	if s.ExternalID != "" {
		before := p.ExternalID
		if err := sameOrEmpty("external_id", &p.ExternalID, s.ExternalID); err != nil {
			return false, err
		}
		changed = changed || before != p.ExternalID
	}
	if s.MP != nil {
		id, ok := p.MP[s.MP.AppID]
		switch {
		case ok && id.OpenID != s.MP.OpenID:
			return false, &ConflictError{Field: "mp_openid"}
		case !ok:
			if p.MP == nil {
				p.MP = map[string]MPIdentity{}
			}
			p.MP[s.MP.AppID] = MPIdentity{OpenID: s.MP.OpenID, FirstSeen: at}
			changed = true
		}
	}
	if s.OA != nil {
		id, ok := p.OA[s.OA.AppID]
		switch {
		case ok && id.OpenID != s.OA.OpenID:
			return false, &ConflictError{Field: "oa_openid"}
		case !ok:
			id = OAIdentity{OpenID: s.OA.OpenID, FirstSeen: at}
			changed = true
		}
		if f := s.OA.Follow; f != nil {
			var moved bool
			if id, moved = followChange(id, *f, now); moved {
				changed = true
			}
		}
		if p.OA == nil {
			p.OA = map[string]OAIdentity{}
		}
		p.OA[s.OA.AppID] = id
	}
	web, err := attachApp(&p.Web, s.Web, at, "web_openid")
	if err != nil {
		return false, err
	}
	mobile, err := attachApp(&p.Mobile, s.Mobile, at, "app_openid")
	if err != nil {
		return false, err
	}
	return changed || web || mobile, nil
}

// followChange applies f to id when it is news, and reports whether id changed.
//
// Follow state is monotonic in platform time: WeChat retries pushes and
// backfill reads old state, so a change older than the last one applied is
// ignored. Platform time has whole seconds, so times compare by the second
// (a sub-second time, such as a send's 43004 at wxbridge's now, must not
// outrank an event of its second), and a follow, an unfollow and a follow
// again can share one: within it, the order things arrive in says nothing.
// A different state of the last change's second is taken only from a
// platform answer asked after the recorded state was last known to hold
// (Seen after SeenAt); anything else leaves the tie to the caller, who
// settles it by asking user/info.
func followChange(id OAIdentity, f Follow, now time.Time) (OAIdentity, bool) {
	at, last := f.At.Unix(), lastFollowChange(id)
	switch {
	case at > last:
		return followed(id, f, now), true
	case at < last, f.Seen.IsZero(), !f.Seen.After(followSeen(id)):
		return id, false
	case id.Subscribed == f.Subscribed:
		// Asked again later: older answers can no longer flip it.
		id.SeenAt = &f.Seen
		return id, true
	}
	return followed(id, f, now), true
}

// lastFollowChange is the second of id's last follow change.
func lastFollowChange(id OAIdentity) int64 {
	last := int64(math.MinInt64)
	for _, t := range []*time.Time{id.SubscribedAt, id.UnsubscribedAt} {
		if t != nil {
			last = max(last, t.Unix())
		}
	}
	return last
}

// followSeen is when id's follow state was last known to hold: SeenAt, or
// for state recorded before SeenAt existed, its last change.
func followSeen(id OAIdentity) time.Time {
	if id.SeenAt != nil {
		return *id.SeenAt
	}
	var seen time.Time
	for _, t := range []*time.Time{id.SubscribedAt, id.UnsubscribedAt} {
		if t != nil && t.After(seen) {
			seen = *t
		}
	}
	return seen
}

// followed records f on id. An event's own word is seen when it is
// recorded (now): user/info asked after that answers after the event.
func followed(id OAIdentity, f Follow, now time.Time) OAIdentity {
	at, seen := f.At, f.Seen
	if seen.IsZero() {
		seen = now
	}
	id.Subscribed, id.SeenAt = f.Subscribed, &seen
	if f.Subscribed {
		id.SubscribedAt = &at
		if f.Scene != "" {
			id.Scene = f.Scene
		}
	} else {
		id.UnsubscribedAt = &at
	}
	return id
}

func sameOrEmpty(field string, have *string, want string) error {
	switch {
	case want == "" || *have == want:
		return nil
	case *have == "":
		*have = want
		return nil
	}
	return &ConflictError{Field: field}
}

func clonePerson(p Person) Person {
	q := p
	q.MP = maps.Clone(p.MP)
	q.OA = maps.Clone(p.OA)
	q.Web = maps.Clone(p.Web)
	q.Mobile = maps.Clone(p.Mobile)
	if p.Phone != nil {
		ph := *p.Phone
		q.Phone = &ph
	}
	q.MergedFrom = slices.Clone(p.MergedFrom)
	return q
}
