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
	v := newAdminVerb(name, aio)
	userID := idFlag(v.fs, "user", "user")
	check := func() error {
		if *userID <= 0 {
			return errors.New("--user must be a user id")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		if _, err := activeUser(ctx, st, *userID); err != nil {
			return nil, err
		}
		ds, err := st.Devices(ctx, *userID)
		if err != nil {
			return nil, err
		}
		return map[string]any{"devices": chat.DevicesJSON(ds)}, nil
	})
}

func devicesRemove(ctx context.Context, name string, args []string, aio adminIO) int {
	v := newAdminVerb(name, aio)
	userID := idFlag(v.fs, "user", "user")
	deviceID := v.fs.Int64("device", 0, "remove this device only (default: every device of the user)")
	check := func() error {
		if *userID <= 0 || *deviceID < 0 {
			return errors.New("--user must be a user id (and --device a device id)")
		}
		return nil
	}
	return v.run(ctx, args, check, func(st persistence.Store) (any, error) {
		if _, err := activeUser(ctx, st, *userID); err != nil {
			return nil, err
		}
		if *deviceID > 0 {
			err := st.DeleteDevice(ctx, *userID, *deviceID)
			if errors.Is(err, persistence.ErrNotFound) {
				return nil, fmt.Errorf("user %d has no device with id %d", *userID, *deviceID)
			}
			if err != nil {
				return nil, err
			}
			return map[string]any{"id": *deviceID, "user_id": *userID, "removed": true}, nil
		}
		n, err := st.DeleteUserDevices(ctx, *userID)
		if err != nil {
			return nil, err
		}
		return map[string]any{"user_id": *userID, "removed": n}, nil
	})
}
