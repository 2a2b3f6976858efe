package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/passgate/passgate/internal/token"
)

// The gRPC load generator sends pre-encoded CheckRequests and reads only
// the fields of the answer it checks, through rawCodec: the client's share
// of the two cores goes to the transport (as Envoy's C++ client, or ghz),
// not to building and walking protobuf messages. An Envoy CheckRequest
// carries a header map, the costliest kind of field to marshal; building
// it per request made the generator, not the servers, the bottleneck.

const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec passes a *rawRequest's bytes through and decodes into a
// *rawAnswer only the decision.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*rawRequest)
	if !ok {
		return nil, fmt.Errorf("rawCodec: cannot marshal %T", v)
	}
	return r.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	a, ok := v.(*rawAnswer)
	if !ok {
		return fmt.Errorf("rawCodec: cannot unmarshal into %T", v)
	}
	return a.decode(data)
}

// rawRequest is an encoded CheckRequest.
type rawRequest struct{ b []byte }

// rawTemplate encodes checkRequest once with a placeholder token, so that
// a request for another token of the same length is a copy into it.
type rawTemplate struct {
	b   []byte
	off int // where the token starts in b; -1 when tokens vary in length
}

func newRawTemplate(c *client) (rawTemplate, error) {
	placeholder := token.New(token.PrefixAccess)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c.checkRequest(placeholder))
	if err != nil {
		return rawTemplate{}, err
	}
	off := bytes.Index(b, []byte(placeholder))
	if off < 0 || bytes.Count(b, []byte(placeholder)) != 1 {
		return rawTemplate{}, errors.New("raw gRPC template: token not found once")
	}
	return rawTemplate{b: b, off: off}, nil
}

// request returns the template with tok, in buf (reused per worker).
func (t rawTemplate) request(buf *rawRequest, tok string, c *client) *rawRequest {
	if len(tok) != len(token.PrefixAccess)+43 {
		// Not a standard-length token: encode it the slow way.
		b, _ := proto.Marshal(c.checkRequest(tok))
		return &rawRequest{b: b}
	}
	if buf.b == nil {
		buf.b = bytes.Clone(t.b)
	}
	copy(buf.b[t.off:], tok)
	return buf
}

// rawAnswer is the part of a CheckResponse the generator checks: the
// status code, whether an OkHttpResponse is present, and a denial's HTTP
// status.
type rawAnswer struct {
	code       int64
	ok         bool
	deniedCode int64
}

// decode walks the top-level fields of an encoded CheckResponse (status
// = 1, denied_response = 2, ok_response = 3) and the code fields inside.
func (a *rawAnswer) decode(b []byte) error {
	*a = rawAnswer{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		switch num {
		case 1: // google.rpc.Status{code = 1}
			a.code = varintField(v, 1)
		case 2: // DeniedHttpResponse{status = 1: HttpStatus{code = 1}}
			a.deniedCode = varintField(bytesField(v, 1), 1)
		case 3:
			a.ok = true
		}
	}
	return nil
}

// lastField returns the encoded value of the last field num of wire type
// want in message b, or nil; malformed input ends the walk.
func lastField(b []byte, num protowire.Number, want protowire.Type) []byte {
	var out []byte
	for len(b) > 0 {
		n2, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(n2, typ, b)
		if m < 0 {
			return out
		}
		if n2 == num && typ == want {
			out = b[:m]
		}
		b = b[m:]
	}
	return out
}

// varintField returns the last varint field num of message b (0 if none).
func varintField(b []byte, num protowire.Number) int64 {
	v, n := protowire.ConsumeVarint(lastField(b, num, protowire.VarintType))
	if n < 0 {
		return 0
	}
	return int64(v)
}

// bytesField returns the last length-delimited field num of message b.
func bytesField(b []byte, num protowire.Number) []byte {
	v, n := protowire.ConsumeBytes(lastField(b, num, protowire.BytesType))
	if n < 0 {
		return nil
	}
	return v
}

// rawCheck sends an encoded CheckRequest on worker w's connection and
// checks the decision as grpcCheck does.
func (c *client) rawCheck(ctx context.Context, w int, req *rawRequest, ans *rawAnswer, want outcome) error {
	if err := c.conns[w%len(c.conns)].Invoke(ctx, checkMethod, req, ans, c.rawCodec); err != nil {
		return err
	}
	allowed := ans.code == 0 && ans.ok
	if outcome(allowed) != want {
		return fmt.Errorf("%w: grpc status %d", errUnexpected, ans.code)
	}
	if !allowed && ans.deniedCode != 401 {
		return fmt.Errorf("%w: denied with %d", errUnexpected, ans.deniedCode)
	}
	return nil
}

// rawWorkers holds each worker's request buffer and answer.
type rawWorkers struct {
	tmpl rawTemplate
	reqs []rawRequest
	ans  []rawAnswer
}

func newRawWorkers(c *client, conc int) (*rawWorkers, error) {
	t, err := newRawTemplate(c)
	if err != nil {
		return nil, err
	}
	return &rawWorkers{tmpl: t, reqs: make([]rawRequest, conc), ans: make([]rawAnswer, conc)}, nil
}

// check sends tok's CheckRequest from worker w.
func (r *rawWorkers) check(ctx context.Context, c *client, w int, tok string, want outcome) error {
	return c.rawCheck(ctx, w, r.tmpl.request(&r.reqs[w], tok, c), &r.ans[w], want)
}
