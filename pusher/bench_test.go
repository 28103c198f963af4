package pusher

import "testing"

// BenchmarkDecodeSubscribe is a subscribe's decoding, as pusher-js sends it:
// the message, then its data.
func BenchmarkDecodeSubscribe(b *testing.B) {
	raw := []byte(`{"event":"pusher:subscribe","data":{"auth":"key-1:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","channel":"private-bench-1"}}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m, err := DecodeMessage(raw)
		if err != nil {
			b.Fatal(err)
		}
		var d SubscribeData
		if err := DecodeData(m.Data, &d); err != nil || d.Channel != "private-bench-1" {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkValidChannelAuth is a private subscribe's signature check.
func BenchmarkValidChannelAuth(b *testing.B) {
	auth := ChannelAuth("key-1", "secret-1", "123456789.42", "private-bench-1", "")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !ValidChannelAuth(auth, "key-1", "secret-1", "123456789.42", "private-bench-1", "") {
			b.Fatal("refused")
		}
	}
}
