package daemon

import (
	"fmt"
	"net"
	"os"
)

// Notify tells systemd about the daemon's state (sd_notify: "READY=1",
// "STOPPING=1") when it runs under a Type=notify unit ($NOTIFY_SOCKET);
// elsewhere it does nothing. A unit that waits for READY=1 makes
// `systemctl start` return only once the daemon serves: what a rolling
// restart needs before it stops the old process.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if addr[0] == '@' { // an abstract socket
		addr = "\x00" + addr[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	return nil
}
