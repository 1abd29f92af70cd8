package etcdutil

import (
	"context"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// electionRetry is how long a request waits out an etcd leader election
// (one election takes about a second with etcd's defaults).
const electionRetry = 5 * time.Second

// retryThroughElections retries what etcd's own client does not, while a
// member dies and the others elect a new leader:
//   - any request refused with "no leader": it was never proposed, so a
//     retry cannot apply it twice;
//   - a read-only transaction refused as unavailable ("leader changed"):
//     reading twice is harmless. (The client retries plain Gets itself,
//     but no Txn, since a Txn may write.)
//
// Writes refused with "leader changed" are not retried: they may have been
// applied, and the caller must decide.
func retryThroughElections(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	deadline := time.Now().Add(electionRetry)
	wait := 50 * time.Millisecond
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil || !retriable(method, req, err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

func retriable(method string, req any, err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return false
	}
	if strings.Contains(st.Message(), "no leader") {
		return true
	}
	txn, ok := req.(*pb.TxnRequest)
	return ok && method == "/etcdserverpb.KV/Txn" && readOnly(txn)
}

func readOnly(txn *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{txn.Success, txn.Failure} {
		for _, op := range ops {
			if op.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}
