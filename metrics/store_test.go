package metrics

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/persistence"
)

// errDown is the recording store's answer: a failure that is neither not
// found nor a conflict, so the wrapper counts it in parley_db_errors_total.
var errDown = errors.New("database down")

// recordingStore is a persistence.Store that does nothing but record which
// method was called and fail it with errDown.
type recordingStore struct{ calls []string }

func (r *recordingStore) hit(op string) error { r.calls = append(r.calls, op); return errDown }

func (r *recordingStore) Migrate(context.Context) error { return r.hit("Migrate") }
func (r *recordingStore) Ping(context.Context) error    { return r.hit("Ping") }
func (r *recordingStore) Close() error                  { return r.hit("Close") }
func (r *recordingStore) Dialect() string               { r.hit("Dialect"); return "recording" }
func (r *recordingStore) CreateUser(context.Context, string, string, string) (persistence.User, error) {
	return persistence.User{}, r.hit("CreateUser")
}
func (r *recordingStore) UserByID(context.Context, int64) (persistence.User, error) {
	return persistence.User{}, r.hit("UserByID")
}
func (r *recordingStore) UserByEmail(context.Context, string) (persistence.User, error) {
	return persistence.User{}, r.hit("UserByEmail")
}
func (r *recordingStore) CreateToken(context.Context, int64, string, *time.Time) (persistence.Token, error) {
	return persistence.Token{}, r.hit("CreateToken")
}
func (r *recordingStore) TokenByID(context.Context, int64) (persistence.Token, error) {
	return persistence.Token{}, r.hit("TokenByID")
}
func (r *recordingStore) TouchToken(context.Context, int64, time.Time) error {
	return r.hit("TouchToken")
}
func (r *recordingStore) DeleteToken(context.Context, int64) error { return r.hit("DeleteToken") }
func (r *recordingStore) CreateMatter(context.Context, string) (persistence.Matter, error) {
	return persistence.Matter{}, r.hit("CreateMatter")
}
func (r *recordingStore) MatterByID(context.Context, int64) (persistence.Matter, error) {
	return persistence.Matter{}, r.hit("MatterByID")
}
func (r *recordingStore) AddMember(context.Context, int64, int64) error { return r.hit("AddMember") }
func (r *recordingStore) IsMember(context.Context, int64, int64) (bool, error) {
	return false, r.hit("IsMember")
}
func (r *recordingStore) MemberIDs(context.Context, int64) ([]int64, error) {
	return nil, r.hit("MemberIDs")
}
func (r *recordingStore) MattersForUser(context.Context, int64) ([]persistence.Matter, error) {
	return nil, r.hit("MattersForUser")
}
func (r *recordingStore) CreateMessage(context.Context, int64, int64, string, time.Time) (persistence.Message, error) {
	return persistence.Message{}, r.hit("CreateMessage")
}
func (r *recordingStore) SendMessages(_ context.Context, sends []persistence.Send) []persistence.SendResult {
	return []persistence.SendResult{{Err: r.hit("SendMessages")}}
}
func (r *recordingStore) MessageByID(context.Context, int64) (persistence.Message, error) {
	return persistence.Message{}, r.hit("MessageByID")
}
func (r *recordingStore) UpdateMessage(context.Context, int64, string, time.Time) (persistence.Message, error) {
	return persistence.Message{}, r.hit("UpdateMessage")
}
func (r *recordingStore) ListMessages(context.Context, persistence.MessageQuery) ([]persistence.Message, int, error) {
	return nil, 0, r.hit("ListMessages")
}
func (r *recordingStore) DeleteMessage(context.Context, int64, time.Time) (persistence.Deletion, error) {
	return persistence.Deletion{}, r.hit("DeleteMessage")
}
func (r *recordingStore) Readers(context.Context, []int64) (map[int64][]persistence.Reader, error) {
	return nil, r.hit("Readers")
}
func (r *recordingStore) MatterSummaries(context.Context, int64) ([]persistence.MatterSummary, error) {
	return nil, r.hit("MatterSummaries")
}
func (r *recordingStore) MarkRead(context.Context, int64, int64, time.Time) (persistence.ReadReceipt, bool, error) {
	return persistence.ReadReceipt{}, false, r.hit("MarkRead")
}
func (r *recordingStore) MarkReadUpTo(context.Context, int64, int64, int64, time.Time) (persistence.ReadUpTo, error) {
	return persistence.ReadUpTo{}, r.hit("MarkReadUpTo")
}
func (r *recordingStore) UnreadCounts(context.Context, int64) (map[int64]int, error) {
	return nil, r.hit("UnreadCounts")
}
func (r *recordingStore) UnreadState(context.Context, int64) (map[int64]persistence.MatterUnread, error) {
	return nil, r.hit("UnreadState")
}
func (r *recordingStore) CreateUserWith(context.Context, persistence.NewUser) (persistence.User, error) {
	return persistence.User{}, r.hit("CreateUserWith")
}
func (r *recordingStore) UpdateUser(context.Context, int64, persistence.UserPatch) (persistence.User, error) {
	return persistence.User{}, r.hit("UpdateUser")
}
func (r *recordingStore) DeleteUser(context.Context, int64) ([]int64, error) {
	return nil, r.hit("DeleteUser")
}
func (r *recordingStore) ListUsers(context.Context, persistence.UserQuery) ([]persistence.User, error) {
	return nil, r.hit("ListUsers")
}
func (r *recordingStore) ListTokens(context.Context, int64) ([]persistence.Token, error) {
	return nil, r.hit("ListTokens")
}
func (r *recordingStore) DeleteUserTokens(context.Context, int64) (int, error) {
	return 0, r.hit("DeleteUserTokens")
}
func (r *recordingStore) CreateMatterWith(context.Context, string, []int64) (persistence.Matter, error) {
	return persistence.Matter{}, r.hit("CreateMatterWith")
}
func (r *recordingStore) UpdateMatter(context.Context, int64, string) (persistence.Matter, error) {
	return persistence.Matter{}, r.hit("UpdateMatter")
}
func (r *recordingStore) DeleteMatter(context.Context, int64) ([]int64, error) {
	return nil, r.hit("DeleteMatter")
}
func (r *recordingStore) ListMatters(context.Context, persistence.MatterQuery) ([]persistence.Matter, error) {
	return nil, r.hit("ListMatters")
}
func (r *recordingStore) MatterMembers(context.Context, int64) ([]persistence.User, error) {
	return nil, r.hit("MatterMembers")
}
func (r *recordingStore) AddActiveMember(context.Context, int64, int64) (bool, error) {
	return false, r.hit("AddActiveMember")
}
func (r *recordingStore) RemoveMember(context.Context, int64, int64) (bool, error) {
	return false, r.hit("RemoveMember")
}
func (r *recordingStore) RegisterDevice(context.Context, int64, persistence.NewDevice) (persistence.Registration, error) {
	return persistence.Registration{}, r.hit("RegisterDevice")
}
func (r *recordingStore) Devices(context.Context, int64) ([]persistence.Device, error) {
	return nil, r.hit("Devices")
}
func (r *recordingStore) DeleteDevice(context.Context, int64, int64) error {
	return r.hit("DeleteDevice")
}
func (r *recordingStore) DeleteUserDevices(context.Context, int64) (int, error) {
	return 0, r.hit("DeleteUserDevices")
}
func (r *recordingStore) DeleteDeadToken(context.Context, int64, string) (int64, bool, error) {
	return 0, false, r.hit("DeleteDeadToken")
}
func (r *recordingStore) SetMuted(context.Context, int64, int64, bool) error {
	return r.hit("SetMuted")
}
func (r *recordingStore) Muted(context.Context, int64, int64) (bool, error) {
	return false, r.hit("Muted")
}
func (r *recordingStore) PushTargets(context.Context, int64) (persistence.PushTargets, error) {
	return persistence.PushTargets{}, r.hit("PushTargets")
}

// dbCounts reads, per op, how many durations and errors were observed.
func dbCounts(t *testing.T, m *Metrics) (durations, errs map[string]uint64) {
	t.Helper()
	families, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	durations, errs = map[string]uint64{}, map[string]uint64{}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			var op string
			for _, l := range s.GetLabel() {
				if l.GetName() == "op" {
					op = l.GetValue()
				}
			}
			switch f.GetName() {
			case Namespace + "_db_query_duration_seconds":
				durations[op] = s.GetHistogram().GetSampleCount()
			case Namespace + "_db_errors_total":
				errs[op] = uint64(s.GetCounter().GetValue())
			}
		}
	}
	return durations, errs
}

// TestStoreTimesEveryMethod calls each method of the wrapper once: every
// method of persistence.Store (AdminStore's included) and any other the
// wrapper has, so that every interface it satisfies is covered. Each call
// must reach the same method of the store below, and observe one duration
// and (the store failing every call) one error, under the method's name.
func TestStoreTimesEveryMethod(t *testing.T) {
	m := New("test")
	rec := &recordingStore{}
	wrapped := m.Store(rec, "chat")
	var names []string
	for _, typ := range []reflect.Type{reflect.TypeFor[persistence.Store](), reflect.TypeOf(wrapped)} {
		for i := range typ.NumMethod() {
			if meth := typ.Method(i); meth.IsExported() && !slices.Contains(names, meth.Name) {
				names = append(names, meth.Name)
			}
		}
	}
	if len(names) < 40 {
		t.Fatalf("only %d methods found: %v", len(names), names)
	}
	ctxType := reflect.TypeFor[context.Context]()
	for _, name := range names {
		fn := reflect.ValueOf(wrapped).MethodByName(name)
		args := make([]reflect.Value, fn.Type().NumIn())
		for i := range args {
			if in := fn.Type().In(i); in == ctxType {
				args[i] = reflect.ValueOf(context.Background())
			} else {
				args[i] = reflect.Zero(in)
			}
		}
		rec.calls = nil
		durBefore, errBefore := dbCounts(t, m)
		fn.Call(args)
		durAfter, errAfter := dbCounts(t, m)
		if !slices.Equal(rec.calls, []string{name}) {
			t.Errorf("%s: the store below got %v, want [%s]", name, rec.calls, name)
		}
		for op, n := range durAfter {
			if want := durBefore[op] + map[bool]uint64{true: 1}[op == name]; n != want {
				t.Errorf("%s: %d durations of op %q, want %d", name, n, op, want)
			}
		}
		if durAfter[name] == 0 {
			t.Errorf("%s is not timed (no op %q in %s_db_query_duration_seconds)", name, name, Namespace)
		}
		if name == "Dialect" { // returns no error
			continue
		}
		if errAfter[name] != errBefore[name]+1 {
			t.Errorf("%s: %d errors of op %q, want %d", name, errAfter[name], name, errBefore[name]+1)
		}
	}
}
