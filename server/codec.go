package server

import (
	"errors"
	"strings"

	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requestCodec is gRPC's proto codec with one difference on the way in: a
// request whose string fields hold invalid UTF-8 is decoded with the bytes
// kept as they are, so that the handler refuses it with INVALID_ARGUMENT.
// With the stock codec grpc-go answers such a request INTERNAL before any
// Latch code runs, and INTERNAL must never answer a client's mistake
// (design.md invariant 5). Only flat messages of scalar fields (every Latch
// request) take the lenient path; anything else keeps the original error.
type requestCodec struct{ base encoding.CodecV2 }

func newRequestCodec() encoding.CodecV2 {
	return requestCodec{base: encoding.GetCodecV2(encproto.Name)}
}

func (c requestCodec) Name() string { return c.base.Name() }

func (c requestCodec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") {
		return err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	proto.Reset(m)
	if lerr := decodeFlat(data.Materialize(), m.ProtoReflect()); lerr != nil {
		proto.Reset(m)
		return err
	}
	return nil
}

var errNotFlat = errors.New("not a flat message of scalars")

// decodeFlat decodes a message whose known fields are all singular strings,
// enums, bools or integers, without validating UTF-8. Unknown fields are
// skipped.
func decodeFlat(b []byte, m protoreflect.Message) error {
	fields := m.Descriptor().Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd != nil && fd.Cardinality() == protoreflect.Repeated {
			return errNotFlat
		}
		switch typ {
		case protowire.BytesType:
			val, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			switch {
			case fd == nil:
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString(string(val)))
			default:
				return errNotFlat
			}
			b = b[n:]
		case protowire.VarintType:
			val, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if fd != nil {
				switch fd.Kind() {
				case protoreflect.EnumKind:
					m.Set(fd, protoreflect.ValueOfEnum(protoreflect.EnumNumber(int32(val))))
				case protoreflect.BoolKind:
					m.Set(fd, protoreflect.ValueOfBool(val != 0))
				case protoreflect.Int64Kind:
					m.Set(fd, protoreflect.ValueOfInt64(int64(val)))
				case protoreflect.Int32Kind:
					m.Set(fd, protoreflect.ValueOfInt32(int32(val)))
				default:
					return errNotFlat
				}
			}
			b = b[n:]
		default:
			if fd != nil {
				return errNotFlat
			}
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return nil
}
