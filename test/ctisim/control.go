package ctisim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The HTTP control API (documented in doc.go and README.md).

type callRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

type deviceRequest struct {
	Device string `json:"device"`
}

// faultRequest is the JSON form of a Fault: seconds for silent and refuse
// (and optionally delay), delay as a Go duration string ("250ms") or a
// number of milliseconds.
type faultRequest struct {
	Kind    string          `json:"kind"`
	Seconds float64         `json:"seconds"`
	Delay   json.RawMessage `json:"delay"`
}

func (s *Sim) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /calls", s.httpPlaceCall)
	mux.HandleFunc("POST /calls/{id}/answer", s.httpCallAction(s.Answer))
	mux.HandleFunc("POST /calls/{id}/reject", s.httpCallAction(s.Reject))
	mux.HandleFunc("POST /calls/{id}/hangup", s.httpCallAction(s.Hangup))
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.State())
	})
	mux.HandleFunc("POST /devices/{id}/outofservice", s.httpService(false))
	mux.HandleFunc("POST /devices/{id}/backinservice", s.httpService(true))
	mux.HandleFunc("POST /devices/{id}/events", s.httpSendEvent)
	mux.HandleFunc("POST /nodes/{i}/fault", s.httpSetFault)
	mux.HandleFunc("DELETE /nodes/{i}/fault", s.httpClearFault)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// Nothing matched method and path: 405 if the path exists with
		// another method, else 404, both as JSON.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, pattern := mux.Handler(r2); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed, fmt.Errorf("%s %s: use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// readBody decodes an optional JSON body (empty is allowed).
func readBody(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", ErrInvalid, err)
	}
	if len(b) == 0 {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: body is not the expected JSON: %v", ErrInvalid, err)
	}
	return nil
}

func (s *Sim) httpPlaceCall(w http.ResponseWriter, r *http.Request) {
	var req callRequest
	if err := readBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if req.From == "" || req.To == "" {
		writeError(w, http.StatusBadRequest, errors.New(`"from" and "to" are required`))
		return
	}
	id, err := s.PlaceCall(req.From, req.To)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"callID": id})
}

func (s *Sim) httpCallAction(action func(callID, device string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req deviceRequest
		if err := readBody(r, &req); err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		id := r.PathValue("id")
		if err := action(id, req.Device); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"callID": id, "device": req.Device})
	}
}

func (s *Sim) httpService(inService bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := s.SetInService(id, inService); err != nil {
			writeError(w, statusOf(err), err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"device": id, "inService": inService})
	}
}

// httpSendEvent takes the event document as the request body, as it is
// (any content type), not wrapped in JSON.
func (s *Sim) httpSendEvent(w http.ResponseWriter, r *http.Request) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, 64<<10+1))
	if err == nil && len(doc) > 64<<10 {
		err = errors.New("document larger than 64 KiB")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: reading body: %v", ErrInvalid, err))
		return
	}
	id := r.PathValue("id")
	n, err := s.SendEvent(id, doc)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"device": id, "monitors": n})
}

func (s *Sim) pathNode(w http.ResponseWriter, r *http.Request) (int, bool) {
	i, err := strconv.Atoi(r.PathValue("i"))
	if err == nil {
		_, err = s.node(i)
	} else {
		err = fmt.Errorf("%w: node index %q is not a number", ErrNotFound, r.PathValue("i"))
	}
	if err != nil {
		writeError(w, http.StatusNotFound, err)
		return 0, false
	}
	return i, true
}

func (s *Sim) httpSetFault(w http.ResponseWriter, r *http.Request) {
	i, ok := s.pathNode(w, r)
	if !ok {
		return
	}
	var req faultRequest
	if err := readBody(r, &req); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	f, err := req.fault()
	if err == nil {
		err = s.SetFault(i, f)
	}
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, s.State().Nodes[i].Faults)
}

func (s *Sim) httpClearFault(w http.ResponseWriter, r *http.Request) {
	i, ok := s.pathNode(w, r)
	if !ok {
		return
	}
	s.ClearFaults(i)
	writeJSON(w, http.StatusOK, s.State().Nodes[i].Faults)
}

func (fr faultRequest) fault() (Fault, error) {
	if fr.Seconds < 0 {
		return Fault{}, fmt.Errorf("%w: negative seconds", ErrInvalid)
	}
	f := Fault{Kind: FaultKind(fr.Kind), Duration: time.Duration(fr.Seconds * float64(time.Second))}
	if len(fr.Delay) > 0 {
		var str string
		var ms float64
		switch {
		case json.Unmarshal(fr.Delay, &str) == nil:
			d, err := time.ParseDuration(str)
			if err != nil {
				return Fault{}, fmt.Errorf("%w: delay %q: %v", ErrInvalid, str, err)
			}
			f.Delay = d
		case json.Unmarshal(fr.Delay, &ms) == nil:
			f.Delay = time.Duration(ms * float64(time.Millisecond))
		default:
			return Fault{}, fmt.Errorf("%w: delay must be a duration string such as \"250ms\"", ErrInvalid)
		}
	}
	if f.Kind == FaultDelay {
		if f.Delay <= 0 {
			return Fault{}, fmt.Errorf("%w: delay fault needs \"delay\", e.g. \"250ms\"", ErrInvalid)
		}
	}
	return f, nil
}
