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
    /// The source that counted it, once `Stats` has merged the sources' readings (a source
    /// reports its own keys without it): two sources' `exits` never overwrite each other.
    public let source: String?
    /// Upstream's key for the same count (`kvm_exit(HLT) kvm_exit`, `kvm_pio`, a pid), made
    /// once: the order scripts see rows and columns in is upstream's sort of these.
    public let upstreamKey: String
    /// The hash of all of the above, made once: keys are looked up many times a sample (a
    /// big host's hundreds of thousands), strings hashed once each.
    private let hashCode: Int
    /// The hash of everything but the guest: the same count of any guest has the same shape
    /// (a big host's exposition works out a shape's labels once, not once a guest).
    public let shapeCode: Int

    public init(_ name: String, parent: String? = nil, guest: Int? = nil, vcpu: Int? = nil, source: String? = nil) {
        let upstreamKey: String
        if let guest, name.isEmpty {
            upstreamKey = String(guest)
        } else {
            upstreamKey = parent.map { name + " " + $0 } ?? name
        }
        self.init(name, parent: parent, guest: guest, vcpu: vcpu, source: source, upstreamKey: upstreamKey)
    }

    private init(_ name: String, parent: String?, guest: Int?, vcpu: Int?, source: String?, upstreamKey: String) {
        self.name = name
        self.parent = parent
        self.guest = guest
        self.vcpu = vcpu
        self.source = source
        self.upstreamKey = upstreamKey
        var hasher = Hasher()
        hasher.combine(name)
        hasher.combine(parent)
        hasher.combine(vcpu)
        hasher.combine(source)
        shapeCode = hasher.finalize()  // (a copy: `hasher` goes on to the guest)
        hasher.combine(guest)
        hashCode = hasher.finalize()
    }

    /// Whether `other` is the same count as this, whatever the guest.
    public func sameShape(as other: EventID) -> Bool {
        shapeCode == other.shapeCode && vcpu == other.vcpu && name == other.name && parent == other.parent
            && source == other.source
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(hashCode) }

    public static func == (lhs: EventID, rhs: EventID) -> Bool {
        lhs.hashCode == rhs.hashCode && lhs.guest == rhs.guest && lhs.vcpu == rhs.vcpu && lhs.name == rhs.name
            && lhs.parent == rhs.parent && lhs.source == rhs.source
    }

    /// The same count, as `source` counted it.
    public func from(_ source: String) -> EventID {
        EventID(name, parent: parent, guest: guest, vcpu: vcpu, source: source, upstreamKey: upstreamKey)
    }

    /// The key of `pid`'s value as `source` reported it (`of(guest:)` and `from(_:)` at once).
    public func of(guest pid: Int, from source: String) -> EventID {
        name.isEmpty ? EventID(name, parent: parent, guest: pid, vcpu: vcpu, source: source)
            : EventID(name, parent: parent, guest: pid, vcpu: vcpu, source: source, upstreamKey: upstreamKey)
    }

    /// The same count for guest `pid` (nil: for the host).
    public func of(guest pid: Int?) -> EventID {
        // Upstream's key depends on the guest only for a guest's total (no name).
        name.isEmpty ? EventID(name, parent: parent, guest: pid, vcpu: vcpu, source: source)
            : EventID(name, parent: parent, guest: pid, vcpu: vcpu, source: source, upstreamKey: upstreamKey)
    }

    /// The family it belongs to (a child belongs to its parent's), once its source is known.
    public var family: FamilyKey? {
        guard let source, !isGuestTotal else { return nil }
        return FamilyKey(source: source, name: parent ?? name)
    }

    /// The value a child stands for under its parent: `HLT` of `kvm_exit(HLT)`; nil for an
    /// event that is no child, or a vCPU's value.
    public var childLabel: String? {
        guard let parent, vcpu == nil, name.count > parent.count + 1, name.hasSuffix(")") else { return nil }
        return String(name.dropFirst(parent.count + 1).dropLast())
    }

    /// All events of one guest (a row of the by-guest view).
    public static func guestTotal(_ pid: Int) -> EventID { EventID("", guest: pid) }

    /// By-guest rows that are not one guest: what guests without a cgroup of their own and the
    /// host counted (the tracepoint source counts guests through their cgroups), and what guests
    /// that have quit counted. Their ids name no process.
    public static let otherGuests = -1
    public static let departedGuests = -2
    /// What no guest's thread counted (interrupts and the idle task; the bpf source).
    public static let hostOnly = -3

    /// The row label of a special guest id, nil for a process.
    public static func specialGuestLabel(_ id: Int) -> String? {
        switch id {
        case otherGuests: return "(host, guests sharing a cgroup)"
        case departedGuests: return "(guests that have quit)"
        case hostOnly: return "(host)"
        default: return nil
        }
    }

    public var isChild: Bool { parent != nil }
    public var isGuestTotal: Bool { guest != nil && name.isEmpty }

    /// Upstream's order; per-vCPU values of the same event by vCPU number, then by source.
    public static func < (lhs: EventID, rhs: EventID) -> Bool {
        if lhs.upstreamKey != rhs.upstreamKey { return lhs.upstreamKey < rhs.upstreamKey }
        if lhs.vcpu != rhs.vcpu { return (lhs.vcpu ?? -1) < (rhs.vcpu ?? -1) }
        if lhs.guest != rhs.guest { return (lhs.guest ?? Int.min) < (rhs.guest ?? Int.min) }
        return (lhs.source ?? "") < (rhs.source ?? "")
    }

    public var description: String { upstreamKey }
}

extension EventID: ExpressibleByStringLiteral {
    /// A plain event by name (tests and tables write `"kvm_pio"`); never parsed for parts.
    public init(stringLiteral name: String) { self.init(name) }
}
