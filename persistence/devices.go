package persistence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// Push platforms a device is registered for.
const (
	PlatformFCM     = "fcm"
	PlatformAPNs    = "apns"
	PlatformWebPush = "webpush"
)

// MaxDevicesPerUser bounds a user's devices: registering one more removes
// the one registered (or refreshed) longest ago, so a client cannot make
// every push fan out to an unbounded list.
const MaxDevicesPerUser = 20

// Device is a push target of a user: an FCM registration token, an APNs
// device token, or a Web Push subscription (Token is its endpoint, P256dh and
// Auth its keys). A (Platform, Token) pair belongs to one user at a time.
type Device struct {
	ID        int64     `db:"id"`
	UserID    int64     `db:"user_id"`
	Platform  string    `db:"platform"`
	Token     string    `db:"token"`
	P256dh    string    `db:"p256dh"`
	Auth      string    `db:"auth"`
	CreatedAt time.Time `db:"created_at"`
	UpdatedAt time.Time `db:"updated_at"`
}

func (d *Device) utc() {
	d.CreatedAt = d.CreatedAt.UTC()
	d.UpdatedAt = d.UpdatedAt.UTC()
}

// NewDevice is a device to register.
type NewDevice struct {
	Platform, Token, P256dh, Auth string
}

// Registration is the outcome of RegisterDevice.
type Registration struct {
	Device Device
	// Created: the token was not registered before.
	Created bool
	// PreviousUserID is the user the token belonged to until now when it
	// moved (a phone changed hands), else 0.
	PreviousUserID int64
	// Evicted are ids of the user's devices removed to stay within
	// MaxDevicesPerUser.
	Evicted []int64
}

// MatterPush is what a push needs of one of a user's matters.
type MatterPush struct {
	Title string `db:"title"`
	Muted bool   `db:"muted"`
}

// PushTargets is what a user's unread counter needs to push: the user's
// devices and, per matter they belong to, its title and their mute.
type PushTargets struct {
	Devices []Device
	Matters map[int64]MatterPush
}

// DeviceStore is the devices and member settings push notifications need.
type DeviceStore interface {
	// RegisterDevice stores the device for the user, idempotent per (platform, token); a token
	// registered by another user moves to this one. ErrNotFound if the user is missing or deleted.
	RegisterDevice(ctx context.Context, userID int64, d NewDevice) (Registration, error)
	// Devices lists the user's devices by ascending id (empty if none).
	Devices(ctx context.Context, userID int64) ([]Device, error)
	// DeleteDevice removes one of the user's devices; ErrNotFound if the user has no such device.
	DeleteDevice(ctx context.Context, userID, deviceID int64) error
	// DeleteUserDevices removes every device of the user and says how many there were.
	DeleteUserDevices(ctx context.Context, userID int64) (int, error)
	// DeleteDeadToken removes the device with this id if it still has this token (a provider
	// said the token is dead) and returns its user; removed is false when it had gone or changed.
	DeleteDeadToken(ctx context.Context, deviceID int64, token string) (userID int64, removed bool, err error)
	// SetMuted sets the member's mute of the matter; ErrNoSuchMatter, or ErrForbidden if the user is not a member.
	SetMuted(ctx context.Context, matterID, userID int64, muted bool) error
	// Muted is the member's mute of the matter; ErrNoSuchMatter, or ErrForbidden if the user is not a member.
	Muted(ctx context.Context, matterID, userID int64) (bool, error)
	// PushTargets is the user's devices and matters as the unread counter's pushes need them.
	PushTargets(ctx context.Context, userID int64) (PushTargets, error)
}

const deviceCols = `id, user_id, platform, token, p256dh, auth, created_at, updated_at`

func (s *sqlStore) RegisterDevice(ctx context.Context, userID int64, nd NewDevice) (Registration, error) {
	var r Registration
	err := s.writeTx(ctx, func(tx *sqlx.Tx) error {
		// FOR SHARE waits for a concurrent DeleteUser and sees its outcome.
		var id int64
		err := tx.GetContext(ctx, &id, s.rebind(`SELECT id FROM users WHERE id = ? AND deleted_at IS NULL`+s.lock(` FOR SHARE`)), userID)
		if err != nil {
			return err
		}
		var prev int64
		err = tx.GetContext(ctx, &prev, s.rebind(`SELECT user_id FROM devices WHERE platform = ? AND token = ?`+s.lock(` FOR UPDATE`)), nd.Platform, nd.Token)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			r.Created = true
		case err != nil:
			return err
		case prev != userID:
			r.PreviousUserID = prev
		}
		now := dbTime(time.Now())
		if err := tx.GetContext(ctx, &r.Device, s.rebind(`INSERT INTO devices (user_id, platform, token, p256dh, auth, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (platform, token) DO UPDATE SET user_id = excluded.user_id, p256dh = excluded.p256dh,
				auth = excluded.auth, updated_at = excluded.updated_at
			RETURNING `+deviceCols), userID, nd.Platform, nd.Token, nd.P256dh, nd.Auth, now, now); err != nil {
			return err
		}
		return tx.SelectContext(ctx, &r.Evicted, s.rebind(`DELETE FROM devices WHERE user_id = ? AND id NOT IN
			(SELECT id FROM devices WHERE user_id = ? ORDER BY updated_at DESC, id DESC LIMIT ?) RETURNING id`),
			userID, userID, MaxDevicesPerUser)
	})
	if errors.Is(err, sql.ErrNoRows) || s.d.isForeignKey(err) {
		return Registration{}, fmt.Errorf("persistence: device of user %d: %w", userID, ErrNoSuchUser)
	}
	if err != nil {
		return Registration{}, fmt.Errorf("persistence: register device: %w", err)
	}
	r.Device.utc()
	return r, nil
}

func (s *sqlStore) Devices(ctx context.Context, userID int64) ([]Device, error) {
	ds := []Device{}
	if err := s.r.SelectContext(ctx, &ds, s.rebind(`SELECT `+deviceCols+` FROM devices WHERE user_id = ? ORDER BY id`), userID); err != nil {
		return nil, fmt.Errorf("persistence: devices: %w", err)
	}
	for i := range ds {
		ds[i].utc()
	}
	return ds, nil
}

func (s *sqlStore) DeleteDevice(ctx context.Context, userID, deviceID int64) error {
	res, err := s.w.ExecContext(ctx, s.rebind(`DELETE FROM devices WHERE id = ? AND user_id = ?`), deviceID, userID)
	return affectedOne(res, err, "delete device", "device", deviceID)
}

func (s *sqlStore) DeleteUserDevices(ctx context.Context, userID int64) (int, error) {
	n, err := rowsAffected(s.w.ExecContext(ctx, s.rebind(`DELETE FROM devices WHERE user_id = ?`), userID))
	if err != nil {
		return 0, fmt.Errorf("persistence: delete devices: %w", err)
	}
	return int(n), nil
}

func (s *sqlStore) DeleteDeadToken(ctx context.Context, deviceID int64, token string) (int64, bool, error) {
	var userID int64
	err := s.w.GetContext(ctx, &userID, s.rebind(`DELETE FROM devices WHERE id = ? AND token = ? RETURNING user_id`), deviceID, token)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("persistence: delete dead token: %w", err)
	}
	return userID, true, nil
}

func (s *sqlStore) SetMuted(ctx context.Context, matterID, userID int64, muted bool) error {
	n, err := rowsAffected(s.w.ExecContext(ctx, s.rebind(`UPDATE members SET muted = ? WHERE matter_id = ? AND user_id = ?`), muted, matterID, userID))
	if err != nil {
		return fmt.Errorf("persistence: set muted: %w", err)
	} else if n == 0 {
		return s.notMember(ctx, matterID, userID)
	}
	return nil
}

func (s *sqlStore) Muted(ctx context.Context, matterID, userID int64) (bool, error) {
	var muted bool
	err := s.r.GetContext(ctx, &muted, s.rebind(`SELECT muted FROM members WHERE matter_id = ? AND user_id = ?`), matterID, userID)
	if errors.Is(err, sql.ErrNoRows) {
		return false, s.notMember(ctx, matterID, userID)
	}
	if err != nil {
		return false, fmt.Errorf("persistence: muted: %w", err)
	}
	return muted, nil
}

// notMember says why a member's row was not found: no such matter, or the
// user is not one of its members.
func (s *sqlStore) notMember(ctx context.Context, matterID, userID int64) error {
	var ok bool
	if err := s.r.GetContext(ctx, &ok, s.rebind(`SELECT EXISTS (SELECT 1 FROM matters WHERE id = ?)`), matterID); err != nil {
		return fmt.Errorf("persistence: matter %d: %w", matterID, err)
	}
	if !ok {
		return fmt.Errorf("persistence: matter %d: %w", matterID, ErrNoSuchMatter)
	}
	return fmt.Errorf("persistence: user %d in matter %d: %w", userID, matterID, ErrForbidden)
}

func (s *sqlStore) PushTargets(ctx context.Context, userID int64) (PushTargets, error) {
	var rows []struct {
		MatterID int64 `db:"matter_id"`
		MatterPush
	}
	if err := s.r.SelectContext(ctx, &rows, s.rebind(`SELECT mm.matter_id, mt.title, mm.muted
		FROM members mm JOIN matters mt ON mt.id = mm.matter_id WHERE mm.user_id = ?`), userID); err != nil {
		return PushTargets{}, fmt.Errorf("persistence: push targets: %w", err)
	}
	devs, err := s.Devices(ctx, userID)
	if err != nil {
		return PushTargets{}, err
	}
	t := PushTargets{Devices: devs, Matters: make(map[int64]MatterPush, len(rows))}
	for _, r := range rows {
		t.Matters[r.MatterID] = r.MatterPush
	}
	return t, nil
}
