import KVMCore
@testable import KVMSources
import Testing

/// The guest book's counting rules, on its flat per-guest tables: the same as every source's
/// (`CounterBook`), whatever order a reader gives a guest's values in.
struct GuestStatBookTests {
    static let kinds: [String: StatKind] = ["exits": .counter, "halt_wait_ns": .counter, "pages": .level, "hist": .histogram]

    static func readings(_ exits0: UInt64, _ exits1: UInt64, pages: UInt64 = 7, wait: UInt64 = 1_000) -> [GuestReading] {
        [GuestReading(name: "exits", vcpu: 0, value: exits0), GuestReading(name: "exits", vcpu: 1, value: exits1),
         GuestReading(name: "pages", value: pages), GuestReading(name: "halt_wait_ns", vcpu: 0, value: wait),
         GuestReading(name: "hist", vcpu: 0, value: 99), GuestReading(name: "unknown", value: 5)]
    }

    static func totals(_ book: inout GuestStatBook, byGuest: Bool = false, pid: Int = 0) -> [String: UInt64] {
        book.select(nil)
        var result: [String: UInt64] = [:]
        for (key, value) in book.reading(ReadRequest(byGuest: byGuest), pid: pid, families: [:], origin: "test").values {
            result[key.isGuestTotal ? "guest \(key.guest!)" : key.name] = value
        }
        return result
    }

    @Test func countsSinceTheBaselineInAnyOrder() {
        var book = GuestStatBook()
        book.admit(10, name: "a", countsFromZero: false)
        book.setKinds(Self.kinds, of: 10)
        #expect(book.record(Self.readings(100, 200), of: 10).isEmpty)
        #expect(Self.totals(&book)["exits"] == 0, "a guest running before kvmstat counts from its first reading")
        _ = book.record(Self.readings(110, 230, pages: 9), of: 10)
        var totals = Self.totals(&book)
        #expect(totals["exits"] == 40 && totals["exits(vcpu0)"] == 10 && totals["exits(vcpu1)"] == 30)
        #expect(totals["pages"] == 9, "a level as it is")
        #expect(totals["hist"] == nil && totals["unknown"] == nil, "histograms and unknown kinds are not counted")
        // The reader's order changes: each value still goes to its own field.
        _ = book.record(Self.readings(115, 231, pages: 3).reversed(), of: 10)
        totals = Self.totals(&book)
        #expect(totals["exits(vcpu0)"] == 15 && totals["exits(vcpu1)"] == 31 && totals["pages"] == 3)
        // A counter below its last reading was reset: it counted the new value; said once.
        #expect(book.record(Self.readings(5, 232), of: 10) == ["exits"])
        #expect(book.record(Self.readings(1, 233), of: 10).isEmpty)
        totals = Self.totals(&book)
        #expect(totals["exits(vcpu0)"] == 15 + 5 + 1 && totals["exits(vcpu1)"] == 33)
    }

    @Test func guestsStartedLaterCountEverythingAndDepartedKeepTheirs() {
        var book = GuestStatBook()
        book.admit(10, name: "a", countsFromZero: true)
        book.setKinds(Self.kinds, of: 10)
        _ = book.record(Self.readings(100, 200), of: 10)
        #expect(Self.totals(&book)["exits"] == 300)
        #expect(Self.totals(&book, byGuest: true)["guest 10"] == 300, "a row sums events, not nanoseconds")
        book.keepOnly([], watching: 0, proc: "/proc")
        #expect(Self.totals(&book)["exits"] == 300, "what a departed guest counted stays")
        #expect(Self.totals(&book)["pages"] == 0, "its levels go with it (the field stays, shown as 0)")
        // A reset: new baselines; a guest read now keeps its readings as the baseline.
        book.admit(11, name: "b", countsFromZero: true)
        book.setKinds(Self.kinds, of: 11)
        _ = book.record(Self.readings(1, 2), of: 11)
        book.reset(readNow: [11])
        #expect(Self.totals(&book)["exits"] == 0)
        _ = book.record(Self.readings(4, 2), of: 11)
        #expect(Self.totals(&book)["exits"] == 3)
    }

    @Test func vcpuIndexesBeyondKVMsAreNoFields() {
        var book = GuestStatBook()
        book.admit(10, name: "a", countsFromZero: true)
        book.setKinds(Self.kinds, of: 10)
        _ = book.record([GuestReading(name: "exits", vcpu: StatisticNumbering.maxVCPUs, value: 5),
                         GuestReading(name: "exits", vcpu: Int.max, value: 5), GuestReading(name: "exits", vcpu: 3, value: 1)], of: 10)
        let totals = Self.totals(&book)
        #expect(totals["exits"] == 1 && totals.keys.filter { $0.hasPrefix("exits(") } == ["exits(vcpu3)"])
    }

    /// Whatever a reader's answers do (the same order, shuffled, shorter or longer, a value
    /// twice, kinds not kept, counters reset or at 2^64), each field counts as the rule says,
    /// checked against a plain model of it over many random answers.
    @Test func randomAnswersCountAsTheRuleSays() {
        var book = GuestStatBook()
        book.admit(10, name: "a", countsFromZero: true)
        book.setKinds(["exits": .counter, "pages": .level], of: 10)
        let exits = book.statisticNumber("exits")!, pages = book.statisticNumber("pages")!, odd = book.statisticNumber("odd")!
        // (statistic, vCPU): exits of 4 vCPUs, pages (the VM's), odd (no kind: not counted).
        let all: [(Int32, Int32)] = (0..<4).map { (exits, Int32($0)) } + [(pages, -1), (odd, -1)]
        var last: [Int: UInt64] = [:], counted: [Int: UInt64] = [:]
        var order = Array(all.indices)
        var random = SystemRandomNumberGenerator()
        for round in 0..<400 {
            switch Int.random(in: 0..<10, using: &random) {
            case 0: order.shuffle(using: &random)
            case 1: order = Array(order.prefix(Int.random(in: 1...order.count, using: &random)))
            case 2: order = Array(all.indices).shuffled(using: &random)
            case 3: order.append(order.randomElement(using: &random)!)
            default: break
            }
            var readings: [NumberedReading] = []
            for index in order {
                let previous = last[index] ?? UInt64.random(in: 0...3, using: &random)
                let value: UInt64 = switch Int.random(in: 0..<12, using: &random) {
                case 0: UInt64.random(in: 0...3, using: &random)
                case 1: UInt64.max - UInt64.random(in: 0...2, using: &random)
                default: previous &+ UInt64.random(in: 0...9, using: &random)
                }
                readings.append(NumberedReading(statistic: all[index].0, vcpu: all[index].1, value: value))
                // The model: a counter's first reading counts whole (a guest started later), a
                // reading below the last was a reset and counted the new value; levels as they are.
                if all[index].0 == exits {
                    counted[index, default: 0] &+= last[index].map { value >= $0 ? value - $0 : value } ?? value
                }
                last[index] = value
            }
            _ = book.record(numbered: readings, of: 10)
            let totals = Self.totals(&book)
            for vcpu in 0..<4 {
                #expect(totals["exits(vcpu\(vcpu))"] == counted[vcpu], "round \(round), vCPU \(vcpu)")
            }
            if let pagesValue = last[4] { #expect(totals["pages"] == pagesValue, "round \(round)") }
            #expect(totals["odd"] == nil)
        }
    }
}
