/// One event's count since kvmstat began (or since the last reset) and its change since the
/// previous sample.
public struct EventStat: Sendable, Equatable {
    public var value: Int
    public var delta: Int

    public init(value: Int, delta: Int) {
        self.value = value
        self.delta = delta
    }
}
