package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/parley-chat/parley/httpapi/chat"
	"github.com/parley-chat/parley/persistence"
)

// The push devices of a user: `parley devices list|remove --user ID`. A
// running server's unread counters see a removal at their next
// reconciliation (PARLEY_UNREAD_RECONCILE); until then a push may still go
// to a removed device. The admin API tells them at once.

func devicesList(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userID := idFlag(fs, "user", "user")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *userID <= 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	if _, err := activeUser(ctx, st, *userID); err != nil {
		return adminFail(aio.stderr, name, err)
	}
	ds, err := st.Devices(ctx, *userID)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"devices": chat.DevicesJSON(ds)})
	return 0
}

func devicesRemove(ctx context.Context, name string, args []string, aio adminIO) int {
	fs, db := newAdminFlags(name, aio.stderr)
	userID := idFlag(fs, "user", "user")
	deviceID := fs.Int64("device", 0, "remove this device only (default: every device of the user)")
	if exit := parseAdminFlags(fs, args, aio.stderr); exit >= 0 {
		return exit
	}
	if *userID <= 0 || *deviceID < 0 {
		return usageFail(aio.stderr, "%s: --user must be a user id (and --device a device id)", name)
	}
	st, err := db.open(ctx, aio.stderr)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	defer st.Close()
	if _, err := activeUser(ctx, st, *userID); err != nil {
		return adminFail(aio.stderr, name, err)
	}
	if *deviceID > 0 {
		err := st.DeleteDevice(ctx, *userID, *deviceID)
		if errors.Is(err, persistence.ErrNotFound) {
			return adminFail(aio.stderr, name, fmt.Errorf("user %d has no device with id %d", *userID, *deviceID))
		}
		if err != nil {
			return adminFail(aio.stderr, name, err)
		}
		printJSON(aio.stdout, map[string]any{"id": *deviceID, "user_id": *userID, "removed": true})
		return 0
	}
	n, err := st.DeleteUserDevices(ctx, *userID)
	if err != nil {
		return adminFail(aio.stderr, name, err)
	}
	printJSON(aio.stdout, map[string]any{"user_id": *userID, "removed": n})
	return 0
}
