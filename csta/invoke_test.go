package csta

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInvokeIDsSequence(t *testing.T) {
	var a InvokeIDs
	for want := 0; want < 5; want++ {
		id, err := a.Next(nil)
		require.NoError(t, err)
		assert.Equal(t, want, id)
	}
}

func TestInvokeIDsWrap(t *testing.T) {
	var a InvokeIDs
	for range MaxRequestInvokeID {
		_, err := a.Next(nil)
		require.NoError(t, err)
	}
	id, err := a.Next(nil)
	require.NoError(t, err)
	assert.Equal(t, MaxRequestInvokeID, id, "9998 is the last request id")
	id, err = a.Next(nil)
	require.NoError(t, err)
	assert.Equal(t, 0, id, "wraps to 0, never 9999")
}

func TestInvokeIDsSkipInUse(t *testing.T) {
	outstanding := map[int]bool{0: true, 1: true, 3: true, MaxRequestInvokeID: true}
	inUse := func(id int) bool { return outstanding[id] }
	var a InvokeIDs
	var got []int
	for range 3 {
		id, err := a.Next(inUse)
		require.NoError(t, err)
		got = append(got, id)
	}
	assert.Equal(t, []int{2, 4, 5}, got)

	// Near the end: 9998 is skipped and the search wraps.
	a = InvokeIDs{next: 9997}
	id, err := a.Next(inUse)
	require.NoError(t, err)
	assert.Equal(t, 9997, id)
	id, err = a.Next(inUse)
	require.NoError(t, err)
	assert.Equal(t, 2, id)
}

func TestInvokeIDsExhausted(t *testing.T) {
	var a InvokeIDs
	_, err := a.Next(nil)
	require.NoError(t, err)

	calls := 0
	_, err = a.Next(func(int) bool { calls++; return true })
	assert.ErrorIs(t, err, ErrNoInvokeID)
	assert.Equal(t, MaxRequestInvokeID+1, calls, "each id asked once")

	// Only 500 is free.
	id, err := a.Next(func(id int) bool { return id != 500 })
	require.NoError(t, err)
	assert.Equal(t, 500, id)
	id, err = a.Next(nil)
	require.NoError(t, err)
	assert.Equal(t, 501, id)
}

func TestFormatInvokeID(t *testing.T) {
	tests := []struct {
		id   int
		want string
	}{
		{0, "0000"}, {7, "0007"}, {42, "0042"}, {999, "0999"}, {9998, "9998"}, {9999, "9999"},
		{10000, "0000"}, {12345, "2345"}, {NoInvokeID, "9999"}, {-10001, "9999"},
	}
	for _, tc := range tests {
		b := FormatInvokeID(tc.id)
		assert.Equal(t, tc.want, string(b[:]), "id %d", tc.id)
	}
}

func TestParseInvokeID(t *testing.T) {
	for _, ok := range []struct {
		in   string
		want int
	}{{"0000", 0}, {"0001", 1}, {"9999", 9999}, {"0420", 420}} {
		id, err := ParseInvokeID([]byte(ok.in))
		require.NoError(t, err)
		assert.Equal(t, ok.want, id)
	}
	for _, bad := range []string{"", "1", "123", "12345", "00a1", " 001", "+001", "-001", "１２３"} {
		_, err := ParseInvokeID([]byte(bad))
		require.ErrorIs(t, err, ErrFrameInvokeID, "%q", bad)
		var fe *FrameError
		assert.True(t, errors.As(err, &fe), "%q", bad)
	}
}

func TestAnswers(t *testing.T) {
	assert.True(t, Answers(KindGetDoNotDisturb, KindGetDoNotDisturbResponse))
	assert.True(t, Answers(KindGetDoNotDisturb, KindCSTAErrorCode))
	assert.False(t, Answers(KindGetDoNotDisturb, KindGetForwardingResponse))
	assert.True(t, Answers(KindStartApplicationSession, KindStartApplicationSessionNegResponse))
	assert.False(t, Answers(KindStopApplicationSession, KindStartApplicationSessionNegResponse))
	assert.False(t, Answers(KindDeliveredEvent, KindCSTAErrorCode), "events are never answered")
}
