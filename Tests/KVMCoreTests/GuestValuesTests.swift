import KVMCore
import Testing

/// `GuestValues` against the dictionary it replaced: whatever is set, read, removed and
/// merged, the table answers as `[EventID: UInt64]` would.
@Suite struct GuestValuesTests {
    /// A deterministic generator (the same sequence on every run).
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    /// Keys over 150 columns (more than two words of presence bits) and guests that include
    /// the special rows and none at all.
    static func key(_ column: Int, guest: Int?, source: String? = "qmp") -> EventID {
        let vcpu = column % 3 == 0 ? nil : column % 8
        return EventID(vcpu == nil ? "stat\(column)" : "stat\(column)(vcpu\(vcpu!))",
                       parent: vcpu == nil ? nil : "stat\(column)", guest: guest, vcpu: vcpu, source: source)
    }

    static let guests: [Int?] = [nil, 0, 1, 4242, Int(Int32.max), EventID.departedGuests, EventID.otherGuests]

    @Test func answersAsTheDictionaryWould() {
        var random = Generator(state: 25)
        var table = GuestValues()
        var reference: [EventID: UInt64] = [:]
        for step in 0..<20_000 {
            let key = Self.key(Int.random(in: 0..<150, using: &random), guest: Self.guests.randomElement(using: &random)!)
            switch step % 5 {
            case 0, 1:
                // Values at their type's limits too.
                let value = [0, 1, UInt64.max, UInt64.max - 1, random.next()][Int.random(in: 0..<5, using: &random)]
                table[key] = value
                reference[key] = value
            case 2:
                table[key, default: 0] &+= 7
                reference[key, default: 0] &+= 7
            case 3:
                table[key] = nil
                reference[key] = nil
            default:
                #expect(table[key] == reference[key])
            }
            #expect(table.count == reference.count)
        }
        #expect(Dictionary(uniqueKeysWithValues: table.map { ($0.key, $0.value) }) == reference)
        #expect(Set(table.keys) == Set(reference.keys) && table.keys.count == reference.count)
        // Keys come back whole: upstream's key too (`==` does not compare it).
        #expect(Set(table.keys.map(\.upstreamKey)) == Set(reference.keys.map(\.upstreamKey)))
        // Removing what is not there leaves no row or column behind.
        var empty = GuestValues()
        empty[Self.key(3, guest: 9)] = nil
        #expect(empty.isEmpty && empty.guests.isEmpty && empty.columns.isEmpty && Array(empty).isEmpty)
    }

    @Test func rowsWalkedInColumnOrder() {
        // Columns are numbered as they come: 200 of them, three words of bits; guest 5 has
        // values in columns 0, 63, 64, 130 and 199 (one removed again), in another order.
        var table = GuestValues()
        for column in 0..<200 { table[Self.key(column, guest: 1)] = 1 }
        for column in [199, 130, 64, 63, 0, 100] { table[Self.key(column, guest: 5)] = UInt64(column) }
        table[Self.key(100, guest: 5)] = nil
        let row = table.guests.firstIndex(of: 5)!
        var seen: [(String, UInt64)] = []
        table.forEach(inRow: row) { seen.append((table.columns[$0].name, $1)) }
        #expect(seen.map(\.0) == ["stat0", "stat63", "stat64(vcpu0)", "stat130(vcpu2)", "stat199(vcpu7)"])
        #expect(seen.map(\.1) == [0, 63, 64, 130, 199])
        // Columns are keys without a guest: one column for every guest's value of an event.
        table[Self.key(2, guest: 6)] = 1
        #expect(table.columns.count == 200 && table.columns.allSatisfy { $0.guest == nil })
        #expect(table.guests == [1, 5, 6] && table.count == 206)
    }

    @Test func mergeQualifiesBySource() {
        var own = GuestValues()
        own[Self.key(1, guest: 7)] = 1
        own[Self.key(2, guest: 8)] = 2
        var merged = GuestValues()
        merged.merge(own, from: "qmp")
        #expect(Dictionary(uniqueKeysWithValues: merged.map { ($0.key, $0.value) })
                == [Self.key(1, guest: 7): 1, Self.key(2, guest: 8): 2])
        // Into an empty table, a source's keys without a source are given it.
        var bare = GuestValues()
        bare[Self.key(3, guest: 7, source: nil)] = 3
        var fresh = GuestValues()
        fresh.merge(bare, from: "bpf")
        #expect(fresh[Self.key(3, guest: 7, source: "bpf")] == 3 && fresh[Self.key(3, guest: 7, source: nil)] == nil)
        #expect(fresh.columns.map(\.source) == ["bpf"])
        // Two keys that become one (with and without the source): the later value, one column.
        var both = GuestValues()
        both[Self.key(4, guest: 7, source: nil)] = 40
        both[Self.key(4, guest: 7, source: "bpf")] = 41
        var collapsed = GuestValues()
        collapsed.merge(both, from: "bpf")
        #expect(collapsed.count == 1 && collapsed[Self.key(4, guest: 7, source: "bpf")] == 41)
        // A source's keys without a source are given it; the same key from two sources is two.
        var unqualified = GuestValues()
        unqualified[Self.key(1, guest: 7, source: nil)] = 10
        unqualified[Self.key(1, guest: 9, source: nil)] = UInt64.max
        merged.merge(unqualified, from: "libvirt")
        #expect(merged.count == 4)
        #expect(merged[Self.key(1, guest: 7, source: "libvirt")] == 10 && merged[Self.key(1, guest: 7)] == 1)
        #expect(merged[Self.key(1, guest: 9, source: "libvirt")] == UInt64.max)
        // The same key again: the later value.
        var again = GuestValues()
        again[Self.key(2, guest: 8)] = 20
        merged.merge(again, from: "qmp")
        #expect(merged[Self.key(2, guest: 8)] == 20 && merged.count == 4)
        #expect(merged != own)
    }
}
