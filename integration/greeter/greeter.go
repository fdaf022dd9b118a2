// Package greeter is the wire contract of the local mesh's gRPC service:
// demo.Greeter/Hello, a StringValue in and out, written by hand so the
// module needs no protoc step.
package greeter

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Method is the full method name callers invoke.
const Method = "/demo.Greeter/Hello"

// HelloFunc answers one Hello.
type HelloFunc func(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)

// Register serves demo.Greeter on s.
func Register(s *grpc.Server, hello HelloFunc) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "demo.Greeter",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Hello",
			Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				return hello(ctx, in)
			},
		}},
	}, struct{}{})
}

// Hello calls demo.Greeter/Hello on conn and returns the name of the pod
// that answered.
func Hello(ctx context.Context, conn grpc.ClientConnInterface, msg string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, Method, wrapperspb.String(msg), out, opts...); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}
