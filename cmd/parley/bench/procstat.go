package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. Linux
// fixes it at 100 for user space on every architecture Go supports (it is
// what `getconf CLK_TCK` prints), so it is not looked up at run time.
const clockTicks = 100

// procCPU returns utime+stime of pid from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	fields, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command name start at field 3 (state); utime and
	// stime are fields 14 and 15 of the full line.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(string(fields[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(fields[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// readProcStat returns the fields of /proc/PID/stat that follow the
// command name. The name is in parentheses and may hold spaces, so the
// split starts after the last ')'.
func readProcStat(pid int) ([][]byte, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("no such process (or no /proc on this system)")
		}
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return bytes.Fields(b[i+1:]), nil
}

// procRSS returns the resident set size of pid in bytes (VmRSS).
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseInt(string(f[0]), 10, 64)
			if err != nil {
				break
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// serverSampler reads the servers' /proc figures, summed over every pid
// (one per node); with no pid it is disabled and every method returns zero.
type serverSampler struct{ pids []int }

func (s serverSampler) enabled() bool { return len(s.pids) > 0 }

func (s serverSampler) cpu() time.Duration { return sumOver(s.pids, procCPU) }

func (s serverSampler) rss() int64 { return sumOver(s.pids, procRSS) }

// sumOver adds read(pid) over pids. A process that cannot be read (it
// exited) counts as zero rather than hiding the others.
func sumOver[T int64 | time.Duration](pids []int, read func(int) (T, error)) T {
	var sum T
	for _, pid := range pids {
		if v, err := read(pid); err == nil {
			sum += v
		}
	}
	return sum
}
