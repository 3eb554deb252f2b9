/// What a count is of: an event (`kvm_pio`), a child event under its parent
/// (`kvm_exit(HLT)` under `kvm_exit`), or a guest's events taken together (the by-guest
/// view), and later per vCPU. Sources make these; formats and the screen read their parts;
/// nothing builds a key string and splits it again.
public struct EventID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// What users see: `kvm_exit(HLT)`; empty for a guest's total.
    public let name: String
    /// The parent event of a child, or nil.
    public let parent: String?
    /// The guest's pid for a by-guest count, or nil.
    public let guest: Int?
    /// The vCPU for a per-vCPU count, or nil.
    public let vcpu: Int?

    public init(_ name: String, parent: String? = nil, guest: Int? = nil, vcpu: Int? = nil) {
        self.name = name
        self.parent = parent
        self.guest = guest
        self.vcpu = vcpu
    }

    /// All events of one guest (a row of the by-guest view).
    public static func guestTotal(_ pid: Int) -> EventID { EventID("", guest: pid) }

    /// By-guest rows that are not one guest: what guests without a cgroup of their own and the
    /// host counted (the tracepoint source counts guests through their cgroups), and what guests
    /// that have quit counted. Their ids name no process.
    public static let otherGuests = -1
    public static let departedGuests = -2

    /// The row label of a special guest id, nil for a process.
    public static func specialGuestLabel(_ id: Int) -> String? {
        switch id {
        case otherGuests: return "(host, guests sharing a cgroup)"
        case departedGuests: return "(guests that have quit)"
        default: return nil
        }
    }

    public var isChild: Bool { parent != nil }
    public var isGuestTotal: Bool { guest != nil && name.isEmpty }

    /// Upstream's key for the same count (`kvm_exit(HLT) kvm_exit`, `kvm_pio`, a pid): the
    /// order scripts see rows and columns in is upstream's sort of these.
    public var upstreamKey: String {
        if isGuestTotal { return String(guest!) }
        return parent.map { name + " " + $0 } ?? name
    }

    /// Upstream's order; per-vCPU values of the same event by vCPU number.
    public static func < (lhs: EventID, rhs: EventID) -> Bool {
        if lhs.upstreamKey != rhs.upstreamKey { return lhs.upstreamKey < rhs.upstreamKey }
        return (lhs.vcpu ?? -1) < (rhs.vcpu ?? -1)
    }

    public var description: String { upstreamKey }
}

extension EventID: ExpressibleByStringLiteral {
    /// A plain event by name (tests and tables write `"kvm_pio"`); never parsed for parts.
    public init(stringLiteral name: String) { self.init(name) }
}
