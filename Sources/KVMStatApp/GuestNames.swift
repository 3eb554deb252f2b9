import KVMCore
import KVMSources

/// The names of the guests a sample has rows or series for, from their command lines; kept
/// between samples, so that a log or the endpoint reads a guest's /proc/PID/cmdline once, not
/// every sample (200 guests at -s 0.1 would be 2,000 reads a second).
struct GuestNames {
    private var known: [Int: String] = [:]
    private let guests = Guests()

    mutating func names(_ values: [EventID: EventStat], _ events: [EventID: UInt64] = [:]) -> [Int: String] {
        var names: [Int: String] = [:]
        for key in Array(values.keys) + Array(events.keys) where key.guest ?? 0 > 0 && names[key.guest!] == nil {
            let pid = key.guest!
            if known[pid] == nil { known[pid] = guests.name(of: pid) }
            names[pid] = known[pid]
        }
        // Pids no longer in view are forgotten (a new process may take one).
        known = known.filter { names[$0.key] != nil }
        return names
    }
}
