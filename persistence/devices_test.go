package persistence

import (
	"context"
	"fmt"
	"testing"
)

func TestDeviceStore(t *testing.T) {
	suite := []storeCase{
		{"Register", testRegisterDevice},
		{"Bounded", testDevicesBounded},
		{"DeadToken", testDeadToken},
		{"Muted", testMuted},
		{"PushTargets", testPushTargets},
	}
	runSuite(t, suite)
}

func deviceTokens(ds []Device) string {
	out := []string{}
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s:%s:%d", d.Platform, d.Token, d.UserID))
	}
	return fmt.Sprint(out)
}

func testRegisterDevice(t *testing.T, s Store) {
	ctx := context.Background()
	ann, bob := mustUser(t, s, "ann"), mustUser(t, s, "bob")
	r, err := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformFCM, Token: "tok-1"})
	if err != nil || !r.Created || r.PreviousUserID != 0 || r.Device.UserID != ann.ID || r.Device.ID == 0 {
		t.Fatalf("register: %+v %v", r, err)
	}
	// Idempotent per token: the same row, not created again.
	again, err := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformFCM, Token: "tok-1"})
	if err != nil || again.Created || again.Device.ID != r.Device.ID || again.PreviousUserID != 0 {
		t.Fatalf("register again: %+v %v", again, err)
	}
	// The same token on another platform is another device.
	if _, err := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformAPNs, Token: "tok-1"}); err != nil {
		t.Fatal(err)
	}
	web, err := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformWebPush, Token: "https://push.example/1", P256dh: "k", Auth: "a"})
	if err != nil || web.Device.P256dh != "k" || web.Device.Auth != "a" {
		t.Fatalf("web push: %+v %v", web, err)
	}
	ds, err := s.Devices(ctx, ann.ID)
	if err != nil || deviceTokens(ds) != fmt.Sprintf("[fcm:tok-1:%d apns:tok-1:%d webpush:https://push.example/1:%d]", ann.ID, ann.ID, ann.ID) {
		t.Fatalf("devices: %s %v", deviceTokens(ds), err)
	}
	// A phone changes hands: the token moves to Bob, keeping its id.
	moved, err := s.RegisterDevice(ctx, bob.ID, NewDevice{Platform: PlatformFCM, Token: "tok-1"})
	if err != nil || moved.Created || moved.PreviousUserID != ann.ID || moved.Device.ID != r.Device.ID || moved.Device.UserID != bob.ID {
		t.Fatalf("moved: %+v %v", moved, err)
	}
	if ds, _ := s.Devices(ctx, ann.ID); len(ds) != 2 {
		t.Fatalf("Ann keeps %s", deviceTokens(ds))
	}
	// Delete: only one's own.
	wantErr(t, "delete another's device", s.DeleteDevice(ctx, ann.ID, r.Device.ID), ErrNotFound)
	if err := s.DeleteDevice(ctx, bob.ID, r.Device.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "delete twice", s.DeleteDevice(ctx, bob.ID, r.Device.ID), ErrNotFound)
	if n, err := s.DeleteUserDevices(ctx, ann.ID); n != 2 || err != nil {
		t.Fatalf("delete user's devices: %d %v", n, err)
	}
	// Unknown and deleted users register nothing; deleting a user removes their devices.
	_, err = s.RegisterDevice(ctx, 9999, NewDevice{Platform: PlatformFCM, Token: "x"})
	wantErr(t, "unknown user", err, ErrNoSuchUser)
	if _, err := s.RegisterDevice(ctx, bob.ID, NewDevice{Platform: PlatformFCM, Token: "bob-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteUser(ctx, bob.ID); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.Devices(ctx, bob.ID); len(ds) != 0 {
		t.Fatalf("a deleted user keeps %s", deviceTokens(ds))
	}
	_, err = s.RegisterDevice(ctx, bob.ID, NewDevice{Platform: PlatformFCM, Token: "bob-2"})
	wantErr(t, "deleted user", err, ErrNotFound)
}

func testDevicesBounded(t *testing.T, s Store) {
	ctx := context.Background()
	ann := mustUser(t, s, "ann")
	first, _ := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformFCM, Token: "t0"})
	var last Registration
	for i := 1; i <= MaxDevicesPerUser; i++ {
		var err error
		if last, err = s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformFCM, Token: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(last.Evicted) != fmt.Sprint([]int64{first.Device.ID}) {
		t.Fatalf("evicted %v, want the oldest %d", last.Evicted, first.Device.ID)
	}
	if ds, _ := s.Devices(ctx, ann.ID); len(ds) != MaxDevicesPerUser || ds[0].Token != "t1" {
		t.Fatalf("kept %s", deviceTokens(ds))
	}
}

func testDeadToken(t *testing.T, s Store) {
	ctx := context.Background()
	ann := mustUser(t, s, "ann")
	r, _ := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformAPNs, Token: "dead"})
	if uid, removed, err := s.DeleteDeadToken(ctx, r.Device.ID, "other"); removed || uid != 0 || err != nil {
		t.Fatalf("another token: %d %v %v", uid, removed, err)
	}
	if uid, removed, err := s.DeleteDeadToken(ctx, r.Device.ID, "dead"); !removed || uid != ann.ID || err != nil {
		t.Fatalf("dead token: %d %v %v", uid, removed, err)
	}
	if _, removed, err := s.DeleteDeadToken(ctx, r.Device.ID, "dead"); removed || err != nil {
		t.Fatalf("again: %v %v", removed, err)
	}
}

func testMuted(t *testing.T, s Store) {
	ctx := context.Background()
	ann, bob := mustUser(t, s, "ann"), mustUser(t, s, "bob")
	m := mustMatter(t, s, "Case", ann)
	if muted, err := s.Muted(ctx, m.ID, ann.ID); muted || err != nil {
		t.Fatalf("default: %v %v", muted, err)
	}
	if err := s.SetMuted(ctx, m.ID, ann.ID, true); err != nil {
		t.Fatal(err)
	}
	if muted, err := s.Muted(ctx, m.ID, ann.ID); !muted || err != nil {
		t.Fatalf("muted: %v %v", muted, err)
	}
	if err := s.SetMuted(ctx, m.ID, ann.ID, true); err != nil {
		t.Fatalf("idempotent: %v", err)
	}
	_, err := s.Muted(ctx, m.ID, bob.ID)
	wantErr(t, "not a member", err, ErrForbidden)
	wantErr(t, "not a member", s.SetMuted(ctx, m.ID, bob.ID, true), ErrForbidden)
	_, err = s.Muted(ctx, 9999, ann.ID)
	wantErr(t, "no matter", err, ErrNoSuchMatter)
	wantErr(t, "no matter", s.SetMuted(ctx, 9999, ann.ID, false), ErrNoSuchMatter)
}

func testPushTargets(t *testing.T, s Store) {
	ctx := context.Background()
	ann, bob := mustUser(t, s, "ann"), mustUser(t, s, "bob")
	m1, m2 := mustMatter(t, s, "One", ann, bob), mustMatter(t, s, "Two", ann)
	if err := s.SetMuted(ctx, m2.ID, ann.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RegisterDevice(ctx, ann.ID, NewDevice{Platform: PlatformFCM, Token: "a"}); err != nil {
		t.Fatal(err)
	}
	pt, err := s.PushTargets(ctx, ann.ID)
	if err != nil || len(pt.Devices) != 1 || pt.Devices[0].Token != "a" ||
		pt.Matters[m1.ID] != (MatterPush{Title: "One"}) || pt.Matters[m2.ID] != (MatterPush{Title: "Two", Muted: true}) || len(pt.Matters) != 2 {
		t.Fatalf("targets: %+v %v", pt, err)
	}
	if pt, err := s.PushTargets(ctx, bob.ID); err != nil || len(pt.Devices) != 0 || len(pt.Matters) != 1 {
		t.Fatalf("Bob's: %+v %v", pt, err)
	}
}
