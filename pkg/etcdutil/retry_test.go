package etcdutil

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func TestRetriableThroughElections(t *testing.T) {
	read := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("/a")}}}}}
	write := &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("/a")}}}}}
	put := &pb.PutRequest{Key: []byte("/a")}
	for _, c := range []struct {
		name   string
		method string
		req    any
		err    error
		want   bool
	}{
		{"read-only txn, leader changed", "/etcdserverpb.KV/Txn", read, rpctypes.ErrGRPCLeaderChanged, true},
		{"writing txn, leader changed (may have applied)", "/etcdserverpb.KV/Txn", write, rpctypes.ErrGRPCLeaderChanged, false},
		{"writing txn, no leader (never proposed)", "/etcdserverpb.KV/Txn", write, rpctypes.ErrGRPCNoLeader, true},
		{"put, no leader", "/etcdserverpb.KV/Put", put, rpctypes.ErrGRPCNoLeader, true},
		{"put, leader changed", "/etcdserverpb.KV/Put", put, rpctypes.ErrGRPCLeaderChanged, false},
		{"read-only txn, not an availability error", "/etcdserverpb.KV/Txn", read, rpctypes.ErrGRPCCompacted, false},
		{"not a gRPC status", "/etcdserverpb.KV/Txn", read, errors.New("boom"), false},
	} {
		if got := retriable(c.method, c.req, c.err); got != c.want {
			t.Errorf("%s: retriable = %v, want %v", c.name, got, c.want)
		}
	}
}
