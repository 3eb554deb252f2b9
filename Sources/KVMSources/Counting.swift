import KVMCore

/// How every source reads a counter as the kernel means it: what it counted since the last
/// reading is the increment, and a value below the last one means the counter was reset
/// (written 0, statistics cleared), so it counted the new value. Sums wrap at 2^64 as the
/// kernel's own do.
enum Counting {
    static func step(from previous: UInt64, to value: UInt64) -> (amount: UInt64, wentBackwards: Bool) {
        value >= previous ? (value - previous, false) : (value, true)
    }
}

/// What guests (VMs) that went away counted, in all and per guest pid for `-p`. Per-guest
/// entries of processes that have ended are dropped (their counts stay in the total: such a
/// pid can no longer be watched, and a new process that gets it must not inherit them), so
/// memory does not grow with every guest a long-running host ever had.
struct DepartedCounts<Key: Hashable> {
    private(set) var all: [Key: UInt64] = [:]
    private var byGuest: [Int: [Key: UInt64]] = [:]

    /// Per-guest entries kept (tests check it stays bounded).
    var guestCount: Int { byGuest.count }

    mutating func add(_ value: UInt64, for key: Key, guest: Int) {
        all[key, default: 0] &+= value
        byGuest[guest, default: [:]][key, default: 0] &+= value
    }

    /// After departures: forget the guests whose process has ended, but the one watched.
    mutating func forgetEnded(watching pid: Int, proc: String) {
        for guest in byGuest.keys where guest != pid && !FileSystem.exists("\(proc)/\(guest)") {
            byGuest[guest] = nil
        }
    }

    /// What the guests in view counted before they went: all with pid 0.
    func counts(watching pid: Int) -> [Key: UInt64] {
        pid == 0 ? all : byGuest[pid] ?? [:]
    }

    mutating func removeAll() {
        all.removeAll()
        byGuest.removeAll()
    }
}
