package store

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fault tests run parts of themselves in a child process: the test
// binary re-executed with childEnv naming what to do. TestMain sends it
// there before any test runs.
const (
	childEnv = "NOOM_STORE_TEST_CHILD"
	dirEnv   = "NOOM_STORE_TEST_DIR"
	limitEnv = "NOOM_STORE_TEST_FSIZE"
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		code := m.Run()
		if nobodyCopy.path != "" {
			os.RemoveAll(filepath.Dir(nobodyCopy.path))
		}
		os.Exit(code)
	case "append":
		childAppend(os.Getenv(dirEnv))
	case "full":
		childFull(os.Getenv(dirEnv), os.Getenv(limitEnv))
	case "open":
		childOpen(os.Getenv(dirEnv), false)
	case "open-ro-mount":
		childOpen(os.Getenv(dirEnv), true)
	default:
		fmt.Fprintln(os.Stderr, "unknown child", os.Getenv(childEnv))
		os.Exit(2)
	}
}

// child prepares the re-executed test binary for mode.
func child(t *testing.T, mode, dir string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, dirEnv+"="+dir)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// The crash test's child appends to crashRooms rooms from crashRooms
// goroutines, one per room, with up to 32 appends in flight each, and
// prints "room seq" for every acknowledged record. It resumes each room
// from its LastSeq, so it can be killed and started again on the same
// store.
const crashRooms = 8

func childAppend(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	type ack struct {
		room string
		seq  uint64
		err  error
	}
	acks := make(chan ack, 1<<16)
	for i := range crashRooms {
		room := fmt.Sprint("room", i)
		m, _, err := s.Meta(room)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		go func() {
			inflight := make(chan struct{}, 32)
			for seq := m.LastSeq + 1; ; seq++ {
				inflight <- struct{}{}
				appendCB(s, room, rec(room, seq, time.Now().UnixMilli()), func(err error) {
					acks <- ack{room, seq, err}
					<-inflight
				})
			}
		}()
	}
	w := bufio.NewWriter(os.Stdout)
	for a := range acks {
		if a.err != nil {
			fmt.Fprintln(os.Stderr, "child: append:", a.err)
			os.Exit(1)
		}
		fmt.Fprintf(w, "%s %d\n", a.room, a.seq)
		if len(acks) == 0 {
			w.Flush()
		}
	}
}

// TestCrash kills a child process with SIGKILL while it appends, three
// times over on the same store, and checks after each that every record
// the child saw acknowledged is stored, in order and without gaps.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills child processes")
	}
	t.Parallel()
	dir := t.TempDir()
	acked := make(map[string]uint64)
	total := 0
	for round := 1; round <= 3; round++ {
		cmd := child(t, "append", dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill mid-stream, a while after the first acknowledgement:
		// the child never stops on its own.
		sc := bufio.NewScanner(out)
		n := 0
		var kill *time.Timer
		for sc.Scan() {
			if kill == nil {
				kill = time.AfterFunc(time.Duration(round)*300*time.Millisecond, func() {
					cmd.Process.Signal(syscall.SIGKILL)
				})
			}
			room, num, _ := strings.Cut(sc.Text(), " ")
			seq, err := strconv.ParseUint(num, 10, 64)
			if err != nil {
				t.Fatalf("child said %q", sc.Text())
			}
			if seq != acked[room]+1 {
				t.Fatalf("child acknowledged %s %d after %d", room, seq, acked[room])
			}
			acked[room] = seq
			n++
		}
		// What the child wrote before the kill has been read: its
		// acknowledgements all count.
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("child ended with %v, not killed", err)
		}
		total += n

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("reopen after kill -9: %v", err)
		}
		stored := uint64(0)
		for room, last := range acked {
			m, _, err := s.Meta(room)
			if err != nil {
				t.Fatal(err)
			}
			if m.LastSeq < last {
				t.Errorf("round %d: %s has LastSeq %d, but %d was acknowledged", round, room, m.LastSeq, last)
			}
			recs, err := s.Newest(room, int(m.LastSeq))
			if err != nil {
				t.Fatal(err)
			}
			wantSeqs(t, fmt.Sprintf("round %d, %s", round, room), room, recs, 1, m.LastSeq)
			stored += m.LastSeq
			// Durable but not yet reported when killed: the next
			// child goes on after them.
			acked[room] = m.LastSeq
		}
		s.Close()
		t.Logf("round %d: killed after %d acknowledgements; %d acknowledged in all, %d stored, every acknowledged one found", round, n, total, stored)
	}
}

// childFull appends to one room, one record at a time, under an
// RLIMIT_FSIZE of limit bytes, so the file stops growing as on a full
// disk. It prints "ack seq" for each acknowledged record, "err text" for
// the first few failures, and "closed err" after Close.
func childFull(dir, limit string) {
	lim, _ := strconv.ParseUint(limit, 10, 64)
	// Without this the kernel kills the process at the limit instead of
	// failing the write with EFBIG.
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: lim, Max: lim}); err != nil {
		fmt.Println("setrlimit", err)
		os.Exit(3)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open", err)
		os.Exit(1)
	}
	big := bytes.Repeat([]byte("x"), 1000)
	fails := 0
	for seq := uint64(1); fails < 3; {
		r := Record{Seq: seq, TS: 1, Payload: append(payload("a", seq), big...)}
		if err := appendWait(s, "a", r); err != nil {
			fmt.Printf("err %v\n", err)
			fails++
			continue // the same seq again: nothing was stored
		}
		fmt.Printf("ack %d\n", seq)
		seq++
	}
	fmt.Printf("closed %v\n", s.Close())
}

// TestDiskFull fills the store under a file size limit in a child process:
// appends then fail with ErrFull through done, later ones too (the store
// does not give up), Close works, and after a reopen without the limit
// every acknowledged record is there and the room goes on. RLIMIT_FSIZE
// works the same for root and other users.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 1 << 20
	cmd := child(t, "full", dir, fmt.Sprintf("%s=%d", limitEnv, limit))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var last uint64
	var errs []string
	closed := ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		word, rest, _ := strings.Cut(line, " ")
		switch word {
		case "ack":
			last, _ = strconv.ParseUint(rest, 10, 64)
		case "err":
			errs = append(errs, rest)
		case "closed":
			closed = rest
		default:
			t.Fatalf("child said %q", line)
		}
	}
	if last == 0 || len(errs) != 3 {
		t.Fatalf("child acknowledged %d records and failed %d times:\n%s", last, len(errs), out)
	}
	for _, e := range errs {
		if !strings.Contains(e, ErrFull.Error()) || !strings.Contains(e, filepath.Join(dir, fileName)) {
			t.Errorf("append on a full disk failed with %q, want ErrFull naming the file", e)
		}
	}
	if closed != "<nil>" {
		t.Errorf("Close on a full disk: %s", closed)
	}
	t.Logf("under a %d-byte limit: %d records acknowledged, then: %s", limit, last, errs[0])

	s := openT(t, dir, Options{})
	m, _, err := s.Meta("a")
	if err != nil || m.LastSeq != last {
		t.Fatalf("after reopen LastSeq %d (%v), want %d", m.LastSeq, err, last)
	}
	recs, err := s.Newest("a", int(last))
	if err != nil || len(recs) != int(last) {
		t.Fatalf("after reopen %d records (%v), want %d", len(recs), err, last)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || !bytes.HasPrefix(r.Payload, payload("a", r.Seq)) {
			t.Fatalf("record %d: %d %q", i, r.Seq, r.Payload[:40])
		}
	}
	if err := appendWait(s, "a", rec("a", last+1, 1)); err != nil {
		t.Errorf("append with room again: %v", err)
	}
}

// childOpen opens dir and prints the result; with mount it first makes dir
// a read-only bind mount of itself (in the private mount namespace the
// parent gave it), or exits 3 if it cannot.
func childOpen(dir string, mount bool) {
	if mount {
		if err := syscall.Mount(dir, dir, "", syscall.MS_BIND, ""); err != nil {
			fmt.Println("mount:", err)
			os.Exit(3)
		}
		if err := syscall.Mount("", dir, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			fmt.Println("remount:", err)
			os.Exit(3)
		}
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	s.Close()
	fmt.Println("opened")
}

// TestOpenReadOnly opens a store that cannot be written, both a new one
// (the directory refuses the file) and an existing one: Open must say the
// directory or file is not writable. Root ignores permission bits, so as
// root the test uses a read-only bind mount in a private mount namespace
// (a real read-only file system) and also re-executes itself as the
// unprivileged user nobody; as any other user it uses chmod.
func TestOpenReadOnly(t *testing.T) {
	t.Parallel()
	setups := []struct {
		name     string
		existing bool
	}{{"new", false}, {"existing", true}}
	for _, st := range setups {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			prepare := func(t *testing.T) (dir, what string) {
				dir = t.TempDir()
				what = "directory " + dir
				if st.existing {
					s := openT(t, dir, Options{})
					fill(t, s, "a", 1, 3, 0)
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					what = filepath.Join(dir, fileName)
				}
				return dir, what
			}
			t.Run("read-only mount", func(t *testing.T) {
				t.Parallel()
				if os.Geteuid() != 0 {
					t.Skip("mounting needs root")
				}
				dir, what := prepare(t)
				cmd := child(t, "open-ro-mount", dir)
				cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
				out, err := cmd.Output()
				if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 || isStartDenied(err) {
					t.Skipf("no read-only bind mount here: %v %s", err, out)
				}
				wantNotWritable(t, string(out), err, what, "read-only file system")
			})
			t.Run("no permission", func(t *testing.T) {
				t.Parallel()
				dir, what := prepare(t)
				if os.Geteuid() != 0 {
					os.Chmod(dir, 0o555)
					if st.existing {
						os.Chmod(what, 0o444)
					}
					t.Cleanup(func() { os.Chmod(dir, 0o700) })
					s, err := Open(dir, Options{})
					if err == nil {
						s.Close()
					}
					wantNotWritable(t, fmt.Sprint(err), nil, what, "permission denied")
					return
				}
				out, err := asNobody(t, dir)
				if isStartDenied(err) {
					t.Skipf("cannot run as nobody here: %v", err)
				}
				wantNotWritable(t, out, err, what, "permission denied")
			})
		})
	}
}

func wantNotWritable(t *testing.T, msg string, err error, what, cause string) {
	t.Helper()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, msg)
	}
	msg = strings.TrimSpace(msg)
	if !strings.Contains(msg, what+" is "+ErrNotWritable.Error()) || !strings.Contains(msg, cause) {
		t.Errorf("Open said %q, want %q is not writable (%s)", msg, what, cause)
	} else {
		t.Logf("Open: %s", msg)
	}
}

// isStartDenied reports a child that could not be started as asked (no
// privilege to switch user or mount namespace).
func isStartDenied(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EINVAL)
}

// nobodyCopy is the test binary copied where nobody can run it, made once
// and removed by TestMain.
var nobodyCopy struct {
	once sync.Once
	path string
	err  error
}

// asNobody runs childOpen on dir as uid and gid 65534. The test binary and
// the store's directory are made reachable for that user: the binary is
// copied to a world-readable place, dir and its parent opened to others,
// and the store (files and dir) handed to root alone with dir 0555.
func asNobody(t *testing.T, dir string) (string, error) {
	t.Helper()
	nobodyCopy.once.Do(func() {
		exe, err := os.Executable()
		if err != nil {
			nobodyCopy.err = err
			return
		}
		d, err := os.MkdirTemp("", "storetest-bin")
		if err != nil {
			nobodyCopy.err = err
			return
		}
		nobodyCopy.path = filepath.Join(d, "store.test")
		nobodyCopy.err = copyFile(exe, nobodyCopy.path)
		os.Chmod(d, 0o755)
	})
	if nobodyCopy.err != nil {
		t.Fatal(nobodyCopy.err)
	}
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o555)
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	cmd := exec.Command(nobodyCopy.path, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=open", dirEnv+"="+dir)
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.Output()
	return string(out), err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
