/// What a read asks of a source.
public struct ReadRequest: Sendable, Equatable {
    /// Rows by guest (`b`, `--by-guest`): `EventID.guestTotal` keys, one per guest, each the
    /// sum of the wanted counters, instead of one per event.
    public var byGuest: Bool
    /// Each guest's value of every wanted event as well (`Reading.guestValues`), for formats
    /// that label series by guest.
    public var perGuest: Bool
    /// Whether histograms are shown (`Reading.histograms`): a source need not ask for what
    /// nobody shows (the screen and the text formats show none).
    public var histograms: Bool

    public init(byGuest: Bool = false, perGuest: Bool = false, histograms: Bool = true) {
        self.byGuest = byGuest
        self.perGuest = perGuest
        self.histograms = histograms
    }
}

/// Everything one read of a source produced: the families its numbers belong to, the numbers
/// (host totals or guest rows), each guest's numbers where asked, histograms, the names of the
/// guests it saw, and what the operator should be told. A sample is built from readings
/// alone: nothing is asked of a source after its read.
///
/// Keys are the source's own (no `source` set); `Stats` qualifies them when it merges.
public struct Reading: Sendable {
    /// The families of the values, by name (`kvm_exit` for `kvm_exit(HLT)` too).
    public var families: [String: MetricFamily]
    /// Counters since the baseline and levels as they are now: by event, or with
    /// `ReadRequest.byGuest` by guest (`EventID.guestTotal`).
    public var values: [EventID: UInt64]
    /// With `ReadRequest.perGuest`: each guest's values, keys with `guest` set.
    public var guestValues: GuestValues
    public var histograms: [EventID: Histogram]
    /// Names of guests the source knows (a libvirt domain's, a QEMU's `-name`), by pid.
    public var guestNames: [Int: String]
    /// Messages for the operator that arose since the last read (said once, on stderr).
    public var warnings: [String]

    public init(families: [String: MetricFamily] = [:], values: [EventID: UInt64] = [:],
                guestValues: GuestValues = [:], histograms: [EventID: Histogram] = [:],
                guestNames: [Int: String] = [:], warnings: [String] = []) {
        self.families = families
        self.values = values
        self.guestValues = guestValues
        self.histograms = histograms
        self.guestNames = guestNames
        self.warnings = warnings
    }
}
