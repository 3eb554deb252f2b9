#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One reading of every event: when it was taken, over how long, and each event's
/// `(value, delta)` under its internal key (`name` or `child parent`).
public struct Sample: Sendable {
    public var time: WallClock
    public var interval: Double
    public var values: [String: EventStat]

    public init(time: WallClock, interval: Double, values: [String: EventStat]) {
        self.time = time
        self.interval = interval
        self.values = values
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

    /// `2026-11-27 04:19:25`, local time, as upstream's log lines start.
    public var logStamp: String {
        let t = local()
        return "\(pad(Int(t.tm_year) + 1900, 4))-\(pad(Int(t.tm_mon) + 1))-\(pad(Int(t.tm_mday))) "
            + "\(pad(Int(t.tm_hour))):\(pad(Int(t.tm_min))):\(pad(Int(t.tm_sec)))"
    }

    /// RFC 3339 with milliseconds and the local UTC offset: `2026-11-27T04:19:25.123+00:00`.
    public var rfc3339: String {
        let t = local()
        let offset = t.tm_gmtoff
        let sign = offset < 0 ? "-" : "+"
        let minutes = abs(offset) / 60
        return "\(pad(Int(t.tm_year) + 1900, 4))-\(pad(Int(t.tm_mon) + 1))-\(pad(Int(t.tm_mday)))T"
            + "\(pad(Int(t.tm_hour))):\(pad(Int(t.tm_min))):\(pad(Int(t.tm_sec)))."
            + "\(pad(nanoseconds / 1_000_000, 3))\(sign)\(pad(minutes / 60)):\(pad(minutes % 60))"
    }

    private func pad(_ value: Int, _ width: Int = 2) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}
