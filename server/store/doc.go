// Package store is the standalone node's durable store of rooms' messages
// and room metadata: one bbolt file, store.db, in the -data directory, or
// the same semantics in memory for -data "".
//
// A message is durable before anyone receives it: Append queues it, one
// committer goroutine writes everything queued in one bbolt transaction
// with one sync (group commit), and only then calls done, which hands the
// message to the fan-out. Under load a sync covers more messages and costs
// less per message: a single producer waiting for each append gets
// 1,100-2,800 appends/s (a commit, two fdatasyncs of ~0.3 ms each, per
// record); with 256 waiting producers 133 records share a commit and one
// room takes 168,000-180,000 appends/s, 2,000 rooms 21,000-24,000
// (BenchmarkAppend on an ext4 virtual disk shared with other work).
//
// # Why bbolt
//
// bbolt, Pebble and SQLite (modernc) were measured on this machine (2
// vCPU, ext4 on a virtual disk, shared with other work: medians of 3 runs)
// with one harness: producers, a committer that writes all that is queued
// in one transaction or batch and syncs once, ~200-byte payloads, 1 or
// 2,000 rooms; a 1M-message store for reads and open. Latency is from
// enqueue to durable, in ms.
//
//	                                 bbolt       Pebble      SQLite
//	200 msg/s, 1 room, p50 / p99     0.64 / 9.7  0.36 / 1.1  0.43 / 4.2
//	200 msg/s, 2,000 rooms           0.61 / 4.2  0.41 / 2.1  0.43 / 2.2
//	2,000 msg/s, 1 room              0.56 / 3.0  0.37 / 1.0  0.38 / 1.6
//	2,000 msg/s, 2,000 rooms         0.66 / 2.8  0.36 / 4.2  0.51 / 5.3
//	max (256 waiting), 1 room        116k/s      123k/s      96k/s
//	max (256 waiting), 2,000 rooms   22.5k/s     74k/s       23k/s
//	disk written per append, 200/s   40 KB       4.3 KB      16 KB
//	newest 50 of 10,000              7-9 µs      20-32 µs    80-85 µs
//	50 before a seq                  13 µs       47 µs       94-103 µs
//	open 1M messages, cold           1-3 ms      4-420 ms    1-7 ms
//	size of 1M messages              241 MB      84-100 MB   239 MB
//	added to a binary; modules       1.3 MB; 2   25 MB; 31   7.8 MB; 8
//
// At the loads a node on such a machine serves (its fan-out saturates a
// core near 190,000 deliveries/s) all three are bound by the sync: bbolt's
// p50 is 0.2 ms higher because a commit syncs twice (the pages, then the
// meta page). Pebble writes a tenth as much per lone message and is three
// times faster with many rooms at saturation, where the B-trees rewrite a
// page per room touched and the path above it on every commit. bbolt was
// chosen for what an operator lives with: a single file with no log to
// replay (a crash leaves the last committed transaction; open takes a
// millisecond), no background compaction competing with the event loop for
// two cores, a Go heap of a few MiB (the rest is the kernel's page cache of
// the mapped file), the fastest page reads, and one small dependency. A
// full disk fails the appends and nothing else: the file stays consistent
// and appends resume when space returns.
//
// # Safety
//
// Records and metadata carry CRC-32C checksums, so a damaged page that bbolt
// still reads is reported, not served; bbolt's own panics on a damaged page
// become ErrDamaged naming the file. Open refuses a file it cannot trust
// (ErrDamaged, ErrNotWritable, ErrLocked) instead of starting empty, and
// creates a new file under another name and renames it into place, so a
// store.db that is empty or unreadable is always damage.
package store
