package server_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// notUTF8 is a field value that is not UTF-8 (a lone 0xff byte) but is
// otherwise acceptable to most fields; "value-1" must never be echoed.
const notUTF8 = "bad\xffvalue-1"

// stringFieldPaths lists the paths to every string field of md, through
// nested, repeated and map fields (a map entry is a message), to depth 4.
func stringFieldPaths(md protoreflect.MessageDescriptor, prefix []protoreflect.FieldDescriptor) [][]protoreflect.FieldDescriptor {
	var out [][]protoreflect.FieldDescriptor
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		path := append(slices.Clone(prefix), fd)
		switch {
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, path)
		case fd.Kind() == protoreflect.MessageKind && len(path) < 4:
			out = append(out, stringFieldPaths(fd.Message(), path)...)
		}
	}
	return out
}

// appendPath appends to b the wire encoding of val in the string field at
// path. Appended after a message's other fields it replaces a singular
// field's value (the last one wins), adds an element to a repeated field
// and merges into a nested message.
func appendPath(b []byte, path []protoreflect.FieldDescriptor, val string) []byte {
	inner := []byte(val)
	if len(path) > 1 {
		inner = appendPath(nil, path[1:], val)
	}
	b = protowire.AppendTag(b, path[0].Number(), protowire.BytesType)
	return protowire.AppendBytes(b, inner)
}

// TestInvalidUTF8InEveryRequestField sends, for every string field of every
// request of AuthService and AdminService (nested, repeated and oneof
// fields included), an otherwise valid request whose field holds invalid
// UTF-8: bytes no well-behaved protobuf library encodes but an attacker
// can send. Each is refused with INVALID_ARGUMENT by a message that names
// the field and echoes nothing, and changes no state; the opaque
// credentials (tokens, device proofs) are instead treated as any other
// malformed credential, as the contract says. A request field added without
// such a check fails here.
func TestInvalidUTF8InEveryRequestField(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	a := newAdminEnvCfg(t, cfg)
	bob := a.createUser("bob@example.com", "bob-password-1", "user")
	bobTP := a.login("bob@example.com", "bob-password-1")

	// A valid request per method: the field under test is the only fault.
	valid := map[protoreflect.FullName]proto.Message{
		"latch.v1.LoginRequest":   &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"},
		"latch.v1.RefreshRequest": &latchv1.RefreshRequest{RefreshToken: bobTP.GetRefreshToken()},
		"latch.v1.CreateUserRequest": &latchv1.CreateUserRequest{
			Email: "carol@example.com", Password: "carol-password-1", Roles: []string{"user"}},
		"latch.v1.GetUserRequest": &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: bob.GetId()}},
		"latch.v1.UpdateUserRequest": &latchv1.UpdateUserRequest{
			UserId: bob.GetId(), Roles: &latchv1.RoleList{Roles: []string{"user", "billing"}}, Email: proto.String("bob2@example.com")},
		"latch.v1.SetPasswordRequest":        &latchv1.SetPasswordRequest{UserId: bob.GetId(), Password: "bob-password-2"},
		"latch.v1.DeleteUserRequest":         &latchv1.DeleteUserRequest{UserId: bob.GetId()},
		"latch.v1.ListSessionsRequest":       &latchv1.ListSessionsRequest{UserId: bob.GetId()},
		"latch.v1.RevokeSessionRequest":      &latchv1.RevokeSessionRequest{SessionId: bobTP.GetSessionId()},
		"latch.v1.RevokeUserSessionsRequest": &latchv1.RevokeUserSessionsRequest{UserId: bob.GetId()},
	}
	// Opaque credentials answer as the contract says for a malformed one.
	credentials := map[protoreflect.FullName]codes.Code{
		"latch.v1.LoginRequest.device_proof":    codes.OK, // an unreadable proof is no proof
		"latch.v1.RefreshRequest.refresh_token": codes.Unauthenticated,
		"latch.v1.RevokeRequest.token":          codes.OK,
		"latch.v1.IntrospectRequest.token":      codes.OK, // active=false
	}

	tested := 0
	for _, file := range []protoreflect.FileDescriptor{latchv1.File_latch_v1_auth_proto, latchv1.File_latch_v1_admin_proto} {
		for i := range file.Services().Len() {
			sd := file.Services().Get(i)
			ctx := ctxT(t)
			if sd.Name() == "AdminService" {
				ctx = a.adminCtx
			}
			for j := range sd.Methods().Len() {
				m := sd.Methods().Get(j)
				paths := stringFieldPaths(m.Input(), nil)
				if len(paths) > 0 && (m.IsStreamingClient() || m.IsStreamingServer()) {
					t.Errorf("%s streams and has string fields: extend this test to it", m.FullName())
					continue
				}
				for _, path := range paths {
					field := path[len(path)-1].FullName()
					t.Run(string(m.Name())+"/"+string(field.Name()), func(t *testing.T) {
						tested++
						var base []byte
						if v, ok := valid[m.Input().FullName()]; ok {
							var err error
							if base, err = proto.Marshal(v); err != nil {
								t.Fatal(err)
							}
						}
						before := a.snapshot()
						out := newResponse(t, m)
						err := a.conn.Invoke(ctx, fmt.Sprintf("/%s/%s", sd.FullName(), m.Name()),
							appendPath(base, path, notUTF8), out, grpc.ForceCodec(rawCodec{}))
						st := status.Convert(err)
						if strings.Contains(st.Message(), "value-1") {
							t.Errorf("message %q echoes the request", st.Message())
						}
						if want, ok := credentials[field]; ok {
							wantStatus(t, err, want, "")
							if in, ok := out.(*latchv1.IntrospectResponse); ok && in.GetActive() {
								t.Error("a token that is not UTF-8 is active")
							}
							return
						}
						wantStatus(t, err, codes.InvalidArgument, "")
						if !namesField(st.Message(), path) {
							t.Errorf("message %q does not name the field %s", st.Message(), field)
						}
						if after := a.snapshot(); after != before {
							t.Errorf("the refused request changed the state:\nbefore %s\nafter  %s", before, after)
						}
					})
				}
			}
		}
	}
	if tested < 20 {
		t.Fatalf("%d string fields tested; the walk over the request descriptors is broken", tested)
	}
	a.login("bob@example.com", "bob-password-1") // nothing above changed bob
}

// newResponse returns an empty response message of m.
func newResponse(t *testing.T, m protoreflect.MethodDescriptor) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(m.Output().FullName())
	if err != nil {
		t.Fatal(err)
	}
	return mt.New().Interface()
}

// namesField reports whether msg names a field of path, or for a repeated
// field one element of it ("role" for roles).
func namesField(msg string, path []protoreflect.FieldDescriptor) bool {
	for _, fd := range path {
		name := string(fd.Name())
		if fd.IsList() {
			name = strings.TrimSuffix(name, "s")
		}
		if strings.Contains(msg, name) {
			return true
		}
	}
	return false
}
