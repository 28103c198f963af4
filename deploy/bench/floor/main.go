// Command floor is the reference a Pusher-protocol server is measured
// against: the least work that still lets `parley bench` run. It answers the
// WebSocket handshake, pusher:subscribe (any channel, no auth) and
// pusher:ping, and for each event POSTed to /apps/{id}/events it encodes one
// frame and writes it to every subscriber of the channel from one goroutine
// per core. There are no checks (no signatures, no limits), no actors, no
// presence, no history: whatever a real server spends beyond this is the
// price of its features. Not for production.
//
//	go run ./deploy/bench/floor --addr 127.0.0.1:8090
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

// sub is one socket; mu serialises its writes (the reader answers pings and
// subscribes, the workers deliver).
type sub struct {
	mu sync.Mutex
	c  *websocket.Conn
}

func (s *sub) write(pm *websocket.PreparedMessage) {
	s.mu.Lock()
	_ = s.c.WritePreparedMessage(pm)
	s.mu.Unlock()
}

func (s *sub) writeText(b []byte) {
	s.mu.Lock()
	_ = s.c.WriteMessage(websocket.TextMessage, b)
	s.mu.Unlock()
}

// channel subscribers, copy-on-write so publishes read without a lock.
type channel struct {
	mu   sync.Mutex
	subs atomic.Pointer[[]*sub]
}

func (ch *channel) update(f func([]*sub) []*sub) {
	ch.mu.Lock()
	var cur []*sub
	if p := ch.subs.Load(); p != nil {
		cur = *p
	}
	next := f(append([]*sub(nil), cur...))
	ch.subs.Store(&next)
	ch.mu.Unlock()
}

type server struct {
	mu       sync.Mutex
	channels map[string]*channel
	nextID   atomic.Int64
	jobs     []chan job // one per worker
}

// job: write pm to subs.
type job struct {
	pm   *websocket.PreparedMessage
	subs []*sub
}

func (s *server) channel(name string) *channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.channels[name]
	if ch == nil {
		ch = &channel{}
		s.channels[name] = ch
	}
	return ch
}

func (s *server) ws(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	me := &sub{c: c}
	id := s.nextID.Add(1)
	est, _ := json.Marshal(map[string]string{"socket_id": "1." + strconv.FormatInt(id, 10), "activity_timeout": "120"})
	frame, _ := json.Marshal(map[string]string{"event": "pusher:connection_established", "data": string(est)})
	me.writeText(frame)
	var joined []*channel
	defer func() {
		for _, ch := range joined {
			ch.update(func(l []*sub) []*sub {
				for i, x := range l {
					if x == me {
						return append(l[:i], l[i+1:]...)
					}
				}
				return l
			})
		}
		c.Close()
	}()
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		var m struct {
			Event string `json:"event"`
			Data  struct {
				Channel string `json:"channel"`
			} `json:"data"`
		}
		if json.Unmarshal(msg, &m) != nil {
			continue
		}
		switch m.Event {
		case "pusher:ping":
			me.writeText([]byte(`{"event":"pusher:pong","data":"{}"}`))
		case "pusher:subscribe":
			ch := s.channel(m.Data.Channel)
			ch.update(func(l []*sub) []*sub { return append(l, me) })
			joined = append(joined, ch)
			ok, _ := json.Marshal(map[string]string{"event": "pusher_internal:subscription_succeeded", "channel": m.Data.Channel, "data": "{}"})
			me.writeText(ok)
		}
	}
}

func (s *server) publish(w http.ResponseWriter, r *http.Request) {
	var ev struct {
		Name     string   `json:"name"`
		Channel  string   `json:"channel"`
		Channels []string `json:"channels"`
		Data     string   `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ev.Channel != "" {
		ev.Channels = append(ev.Channels, ev.Channel)
	}
	for _, name := range ev.Channels {
		p := s.channel(name).subs.Load()
		if p == nil || len(*p) == 0 {
			continue
		}
		subs := *p
		frame, _ := json.Marshal(map[string]string{"event": ev.Name, "channel": name, "data": ev.Data})
		pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
		if err != nil {
			continue
		}
		n := len(s.jobs)
		for i := 0; i < n; i++ {
			lo, hi := len(subs)*i/n, len(subs)*(i+1)/n
			if lo < hi {
				s.jobs[i] <- job{pm: pm, subs: subs[lo:hi]}
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{}"))
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	s := &server{channels: map[string]*channel{}}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		jobs := make(chan job, 4096)
		s.jobs = append(s.jobs, jobs)
		go func() {
			for j := range jobs {
				for _, x := range j.subs {
					x.write(j.pm)
				}
			}
		}()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /app/{key}", s.ws)
	mux.HandleFunc("POST /apps/{id}/events", s.publish)
	mux.HandleFunc("GET /up", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	fmt.Fprintf(os.Stderr, "floor listening on %s (%d writer goroutines)\n", *addr, len(s.jobs))
	log.Fatal(http.ListenAndServe(*addr, mux))
}
