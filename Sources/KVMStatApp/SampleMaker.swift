import KVMCore
import KVMSources

/// Turns a reading of the sources into a `Sample` with what formats may need beside the
/// values — histograms, which fields are levels, guest names, per-guest values — the same way
/// in batch, log and listen modes.
struct SampleMaker {
    private var guestNames = GuestNames()

    /// `guestEvents`: whether per-guest values are wanted (formats that label by guest).
    mutating func sample(_ values: [EventID: EventStat], of stats: Stats, time: WallClock, interval: Double,
                         guestEvents: Bool) -> Sample {
        let events = guestEvents ? stats.guestEvents() : [:]
        var sample = Sample(time: time, interval: interval, values: values, histograms: stats.histograms(),
                            guestNames: guestNames.names(values, events))
        sample.levels = stats.levelFields()
        sample.guestEvents = events
        return sample
    }
}

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
