#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// One sample of every source, merged: when it was taken, over how long, each event's
/// `(value, delta)`, each guest's values where asked, histograms, and the descriptions of the
/// families all these belong to. Formats, the screen and the endpoint read it and nothing
/// else: what a number is (counter or level, its unit, its help) comes from `families`.
public struct Sample: Sendable {
    public var time: WallClock
    public var interval: Double
    public private(set) var values: [EventID: EventStat]
    /// Histogram statistics where a source has them (jsonl and Prometheus show them; the text
    /// formats and the screen, which have one number per row, leave them out).
    public var histograms: [EventID: Histogram]
    /// The names of the guests the sample has rows or series for, by pid.
    public var guestNames: [Int: String]
    /// Each guest's value of every wanted event (keys with `guest` set), when a format that
    /// labels series by guest asked for them.
    public var guestValues: GuestValues
    /// What each family is: by source, then by family name (each source's own table, as
    /// its reading gave it: nothing is rebuilt per sample).
    public var families: [String: [String: MetricFamily]]
    /// Names that more than one source reports (shown qualified: `qmp:exits`).
    private var ambiguous: Set<String>

    public init(time: WallClock, interval: Double, values: [EventID: EventStat],
                histograms: [EventID: Histogram] = [:], guestNames: [Int: String] = [:],
                guestValues: GuestValues = [:], families: [String: [String: MetricFamily]] = [:]) {
        self.time = time
        self.interval = interval
        self.values = values
        self.histograms = histograms
        self.guestNames = guestNames
        self.guestValues = guestValues
        self.families = families
        ambiguous = Self.sharedNames(values.keys)
    }

    /// Adds one value and the family it belongs to (kvmstat's own, in listen mode).
    public mutating func add(_ stat: EventStat, for key: EventID, family: MetricFamily) {
        values[key] = stat
        guard let source = key.source else { return }
        families[source, default: [:]][family.name] = family
        // Another source's family of the same name (looked up in the few sources' families,
        // not in every value: a big host's sample has hundreds of thousands).
        if !key.isGuestTotal, families.contains(where: { $0.key != source && $0.value[key.name] != nil }) {
            ambiguous.insert(key.name)
        }
    }

    /// The event names more than one source reports (`name(of:)` says which source).
    public var ambiguousNames: Set<String> { ambiguous }

    /// Events in upstream's order (its sort of `child parent` keys), sorted as positions: keys
    /// (a hundred bytes and four strings each) are not moved about while sorting.
    public var sortedKeys: [EventID] {
        let keys = Array(values.keys)
        let order = keys.withUnsafeBufferPointer { keys in keys.indices.sorted { keys[$0] < keys[$1] } }
        return order.map { keys[$0] }
    }

    /// The description of the family `key` belongs to, if its source gave one.
    public func family(of key: EventID) -> MetricFamily? {
        key.family.flatMap { families[$0.source]?[$0.name] }
    }

    /// The values `source` counted, keyed as the source reported them (without `source`).
    public func values(of source: String) -> [EventID: EventStat] {
        var result: [EventID: EventStat] = [:]
        for (key, stat) in values where key.source == source {
            result[EventID(key.name, parent: key.parent, guest: key.guest, vcpu: key.vcpu)] = stat
        }
        return result
    }

    /// Whether `key` is a level (a gauge or flag shown as it is), not a count.
    public func isLevel(_ key: EventID) -> Bool { family(of: key)?.isLevel ?? false }

    /// An event's name as a column or row shows it: its own name, qualified by its source
    /// (`qmp:exits`) only when another source reports the same name.
    public func name(of key: EventID) -> String {
        guard let source = key.source, ambiguous.contains(key.name) else { return key.name }
        return source + ":" + key.name
    }

    /// What a row is called: the event's name, or for a guest's row its name and pid
    /// (`web1 (pid 4242)`), or what a special row holds.
    public func label(_ key: EventID) -> String {
        guard key.isGuestTotal, let pid = key.guest else { return name(of: key) }
        if let special = EventID.specialGuestLabel(pid) { return special }
        let name = guestNames[pid] ?? ""
        return name.isEmpty ? "pid \(pid)" : "\(name) (pid \(pid))"
    }

    private static func sharedNames(_ keys: Dictionary<EventID, EventStat>.Keys) -> Set<String> {
        // One source (the common case) shares no name with another: nothing to look at.
        let first = keys.first?.source
        guard keys.contains(where: { $0.source != first }) else { return [] }
        var sources: [String: String] = [:]
        var shared = Set<String>()
        for key in keys where !key.isGuestTotal {
            guard let source = key.source else { continue }
            if let other = sources.updateValue(source, forKey: key.name), other != source { shared.insert(key.name) }
        }
        return shared
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

    /// `2026-11-27 04:19:25`, local time, as upstream's log lines start. A log writes one a
    /// sample, mostly within the same second as the last: the last one is kept.
    public var logStamp: String {
        if let cached = Self.lastStamp.withLock({ $0.seconds == seconds ? $0.text : nil }) { return cached }
        let text = Self.dateTime(local(), separator: " ")
        Self.lastStamp.withLock { $0 = (seconds, text) }
        return text
    }

    private static let lastStamp = Mutex<(seconds: Int, text: String)>((Int.min, ""))

    /// RFC 3339 with milliseconds and the local UTC offset: `2026-11-27T04:19:25.123+00:00`.
    public var rfc3339: String {
        let t = local()
        let minutes = abs(t.tm_gmtoff) / 60
        return Self.dateTime(t, separator: "T") + "." + (nanoseconds / 1_000_000).zeroPadded(to: 3)
            + (t.tm_gmtoff < 0 ? "-" : "+") + (minutes / 60).zeroPadded(to: 2) + ":"
            + (minutes % 60).zeroPadded(to: 2)
    }
}
