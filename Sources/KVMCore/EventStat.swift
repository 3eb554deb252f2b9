/// One event's count since kvmstat began (or since the last reset) and its change since the
/// previous sample. Counts have the kernel's own width (u64); a change is signed because
/// instant values (a VM's `pages_4k`) go down as well as up.
public struct EventStat: Sendable, Equatable {
    public var value: UInt64
    public var delta: Int64

    public init(value: UInt64, delta: Int64) {
        self.value = value
        self.delta = delta
    }

    /// The stat of `value` after `previous`: the change saturates at Int64's limits rather
    /// than trap (only a fake tree can move a count by 2^63 in one sample).
    public init(value: UInt64, previous: UInt64) {
        self.value = value
        if value >= previous {
            let up = value - previous
            delta = up > UInt64(Int64.max) ? .max : Int64(up)
        } else {
            let down = previous - value
            delta = down > UInt64(Int64.max) ? .min : -Int64(down)
        }
    }

    public static let zero = EventStat(value: 0, delta: 0)
}
