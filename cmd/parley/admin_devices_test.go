package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/parley-chat/parley/persistence"
)

// TestAdminDevices: `parley devices list|remove --user` on both databases.
func TestAdminDevices(t *testing.T) {
	clearDBEnv(t)
	for _, mk := range adminDatabases(t) {
		d := mk()
		t.Run(d.name, func(t *testing.T) {
			db := d.flag
			ctx := context.Background()
			ann := runAdmin(t, "users", "create", "--name", "Ann", "--email", "ann@example.com", "--no-password", db).ok(t)
			st := d.open(t)
			var annID int64
			fmt.Sscan(id(t, ann), &annID)
			var devs []persistence.Device
			for _, tok := range []string{"a", "b"} {
				r, err := st.RegisterDevice(ctx, annID, persistence.NewDevice{Platform: persistence.PlatformFCM, Token: tok})
				if err != nil {
					t.Fatal(err)
				}
				devs = append(devs, r.Device)
			}
			got := runAdmin(t, "devices", "list", "--user", id(t, ann), db).ok(t)
			if ids(t, got["devices"]) != fmt.Sprintf("%d,%d", devs[0].ID, devs[1].ID) {
				t.Fatalf("list %v", got)
			}
			runAdmin(t, "devices", "list", "--user", "999", db).fails(t, 1, "no user with id 999")
			runAdmin(t, "devices", "list", db).fails(t, 2, "--user")
			runAdmin(t, "devices", "remove", "--user", id(t, ann), "--device", "999", db).fails(t, 1, "no device with id 999")
			if r := runAdmin(t, "devices", "remove", "--user", id(t, ann), "--device", fmt.Sprint(devs[0].ID), db).ok(t); r["removed"] != true {
				t.Fatalf("remove one %v", r)
			}
			if r := runAdmin(t, "devices", "remove", "--user", id(t, ann), db).ok(t); r["removed"] != float64(1) {
				t.Fatalf("remove all %v", r)
			}
			if ds, _ := st.Devices(ctx, annID); len(ds) != 0 {
				t.Fatalf("left %v", ds)
			}
		})
	}
}
