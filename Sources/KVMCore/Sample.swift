#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One reading of every event: when it was taken, over how long, and each event's
/// `(value, delta)`.
public struct Sample: Sendable {
    public var time: WallClock
    public var interval: Double
    public var values: [EventID: EventStat]
    /// Histogram statistics where a source has them (jsonl shows them; others need not).
    public var histograms: [EventID: Histogram]
    /// The names of the guests whose rows the sample has (by-guest records).
    public var guestNames: [Int: String]
    /// Statistics that are levels (instant or peak values), not counts: formats that type
    /// their numbers (Prometheus's gauges and counters) need to know.
    public var levels: Set<String> = []
    /// Per-guest values of each event (keys with `guest` set), for formats that label series
    /// by guest; empty unless such a format asked.
    public var guestEvents: [EventID: UInt64] = [:]

    public init(time: WallClock, interval: Double, values: [EventID: EventStat],
                histograms: [EventID: Histogram] = [:], guestNames: [Int: String] = [:]) {
        self.time = time
        self.interval = interval
        self.values = values
        self.histograms = histograms
        self.guestNames = guestNames
    }

    /// What a row is called: the event's name, or for a guest's row its name and pid
    /// (`web1 (pid 4242)`), or what a special row holds.
    public func label(_ key: EventID) -> String {
        guard key.isGuestTotal, let pid = key.guest else { return key.name }
        if let special = EventID.specialGuestLabel(pid) { return special }
        let name = guestNames[pid] ?? ""
        return name.isEmpty ? "pid \(pid)" : "\(name) (pid \(pid))"
    }
}

/// A wall-clock instant with the local-time renderings kvmstat's formats need.
public struct WallClock: Sendable, Equatable {
    public var seconds: Int
    public var nanoseconds: Int

    public init(seconds: Int, nanoseconds: Int) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static func now() -> WallClock {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return WallClock(seconds: ts.tv_sec, nanoseconds: ts.tv_nsec)
    }

    private func local() -> tm {
        var t = time_t(seconds)
        var parts = tm()
        localtime_r(&t, &parts)
        return parts
    }

    /// `YYYY-MM-DD<separator>HH:MM:SS` of local time `t`.
    private static func dateTime(_ t: tm, separator: String) -> String {
        (Int(t.tm_year) + 1900).zeroPadded(to: 4) + "-" + (Int(t.tm_mon) + 1).zeroPadded(to: 2)
            + "-" + Int(t.tm_mday).zeroPadded(to: 2) + separator + Int(t.tm_hour).zeroPadded(to: 2)
            + ":" + Int(t.tm_min).zeroPadded(to: 2) + ":" + Int(t.tm_sec).zeroPadded(to: 2)
    }

    /// `2026-11-27 04:19:25`, local time, as upstream's log lines start.
    public var logStamp: String { Self.dateTime(local(), separator: " ") }

    /// RFC 3339 with milliseconds and the local UTC offset: `2026-11-27T04:19:25.123+00:00`.
    public var rfc3339: String {
        let t = local()
        let minutes = abs(t.tm_gmtoff) / 60
        return Self.dateTime(t, separator: "T") + "." + (nanoseconds / 1_000_000).zeroPadded(to: 3)
            + (t.tm_gmtoff < 0 ? "-" : "+") + (minutes / 60).zeroPadded(to: 2) + ":"
            + (minutes % 60).zeroPadded(to: 2)
    }
}
