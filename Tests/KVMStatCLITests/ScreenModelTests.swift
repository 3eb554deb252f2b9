import KVMCore
import Testing

@testable import KVMStatApp

@Suite struct ScreenModelTests {
    private func stat(_ value: UInt64, _ delta: Int64) -> EventStat { EventStat(value: value, delta: delta) }

    @Test func headerLines() {
        #expect(ScreenModel.headline(pid: 0, guestName: "x") == "kvm statistics - summary")
        #expect(ScreenModel.headline(pid: 42, guestName: "vm1") == "kvm statistics - pid 42 (vm1)")
        #expect(ScreenModel.headline(pid: 42, guestName: "") == "kvm statistics - pid 42 ")
        let long = String(repeating: "n", count: 60)
        #expect(ScreenModel.headline(pid: 1, guestName: long)
                == "kvm statistics - pid 1 (" + String(repeating: "n", count: 48) + "...)")
        #expect(ScreenModel.columnHeader(displayGuests: false)
                == "Event                                         Total %Total CurAvg/s")
        #expect(ScreenModel.columnHeader(displayGuests: true)
                == "Guest Name                                    Total %Total CurAvg/s")
        #expect(ScreenModel.regexLine(String(repeating: "a", count: 50))
                == "regex filter: " + String(repeating: "a", count: 44) + "...")
    }

    @Test func controlCharactersAreEscaped() {
        #expect("vm\u{1b}[2J".escapedForDisplay == "vm\\x1b[2J")
        #expect("a\u{7f}b\u{9b}c".escapedForDisplay == "a\\x7fb\\x9bc")
        #expect("plain ünïcode".escapedForDisplay == "plain ünïcode")
        #expect(ScreenModel.headline(pid: 5, guestName: "\u{1b}]0;pwned\u{7}")
                == "kvm statistics - pid 5 (\\x1b]0;pwned\\x07)")
    }

    @Test func rowsSortedByCurrentThenTotal() {
        let values: [EventID: EventStat] = ["a": stat(100, 10), "b": stat(50, 20), "c": stat(300, 10), "d": stat(0, 0)]
        let body = ScreenModel.body(values: values, sortByTotal: false, childEvents: false,
                                    displayGuests: false, interval: 2, height: 40) { _ in "" }
        #expect(body.rows.map { String($0.prefix(1)) } == ["b", "c", "a"])
        #expect(body.rows[0] == "b                                                50   11.1       10")
        // `%-40s %10d        %8s`: the average ends under CurAvg/s.
        #expect(body.total == "Total" + String(repeating: " ", count: 36) + "       450" + "        " + "      20")
        #expect(body.message == nil)
        let byTotal = ScreenModel.body(values: values, sortByTotal: true, childEvents: false,
                                       displayGuests: false, interval: 2, height: 40) { _ in "" }
        #expect(byTotal.rows.map { String($0.prefix(1)) } == ["c", "a", "b"])
    }

    @Test func childrenUnderTheirParentWithParentRelativePercent() {
        let values = [
            "kvm_userspace_exit": stat(300, 30),
            EventID("kvm_userspace_exit(IO)", parent: "kvm_userspace_exit"): stat(200, 20),
            EventID("kvm_userspace_exit(HLT)", parent: "kvm_userspace_exit"): stat(100, 10),
            "kvm_pio": stat(200, 20),
        ]
        let hidden = ScreenModel.body(values: values, sortByTotal: false, childEvents: false,
                                      displayGuests: false, interval: 1, height: 40) { _ in "" }
        #expect(hidden.rows.count == 2)
        let shown = ScreenModel.body(values: values, sortByTotal: false, childEvents: true,
                                     displayGuests: false, interval: 1, height: 40) { _ in "" }
        #expect(shown.rows.map { $0.prefix(25).trimmingCharacters(in: [" "]) }
                == ["kvm_userspace_exit", "kvm_userspace_exit(IO)", "kvm_userspace_exit(HLT)", "kvm_pio"])
        #expect(shown.rows[1].hasPrefix("  kvm_userspace_exit(IO)"))
        #expect(shown.rows[1].contains("   66.7 "))
        #expect(shown.rows[0].contains("   60.0 "))
        // Total counts parents only; children count in it only when there are no parents.
        #expect(shown.total?.contains("       500 ") == true)
        #expect(shown.total?.hasSuffix("50") == true)
    }

    @Test func messagesAndHeightCut() {
        let empty = ScreenModel.body(values: [:], sortByTotal: false, childEvents: false,
                                     displayGuests: false, interval: 1, height: 40) { _ in "" }
        #expect(empty.message == "No matching events reported yet" && empty.total == nil)
        let removed = ScreenModel.body(values: [.guestTotal(42): stat(5, -3)], sortByTotal: false,
                                       childEvents: false, displayGuests: true, interval: 1,
                                       height: 40) { _ in "vm" }
        #expect(removed.message == "Guest removed, updating...")
        // A level that falls (pages_4k) is a row like any other, with its negative change.
        let level = ScreenModel.body(values: ["pages_4k": stat(5, -3)], sortByTotal: false,
                                     childEvents: false, displayGuests: false, interval: 1,
                                     height: 40) { _ in "" }
        #expect(level.message == nil && level.rows.count == 1)
        #expect(level.rows.first?.hasSuffix("      -3") == true)
        var many: [EventID: EventStat] = [:]
        for i in 0..<50 { many[EventID("e\(i)")] = stat(UInt64(i + 1), 1) }
        let cut = ScreenModel.body(values: many, sortByTotal: false, childEvents: false,
                                   displayGuests: false, interval: 1, height: 10) { _ in "" }
        #expect(cut.rows.count == 6)  // lines 3...8, the last line is left for Total
        let single = ScreenModel.body(values: ["a": stat(1, 1)], sortByTotal: false, childEvents: false,
                                      displayGuests: false, interval: 1, height: 40) { _ in "" }
        #expect(single.rows.count == 1 && single.total == nil)
    }

    @Test func byGuestShowsNamedGuestsOnly() {
        let values: [EventID: EventStat] = [.guestTotal(100): stat(10, 1), .guestTotal(200): stat(20, 2)]
        let body = ScreenModel.body(values: values, sortByTotal: false, childEvents: false,
                                    displayGuests: true, interval: 1, height: 40) { $0 == 200 ? "web" : "" }
        #expect(body.rows.count == 1 && body.rows[0].hasPrefix("web "))
        #expect(body.rows[0].contains(" 100.0 "))
    }

    @Test func valuesAtTheLimitsOfTheirTypesNeverTrap() {
        let body = ScreenModel.body(
            values: ["exits": stat(UInt64.max, .max), "pages_4k": stat(UInt64.max, .min),
                     EventID("kvm_exit(HLT)", parent: "kvm_exit"): stat(UInt64.max, .max), "kvm_exit": stat(1, 1)],
            sortByTotal: false, childEvents: true, displayGuests: false, interval: 0.1,
            height: 40) { _ in "" }
        #expect(body.rows.first?.contains("18446744073709551615") == true)
        #expect(body.rows.contains { $0.hasSuffix("9223372036854775807") })
        #expect(body.total != nil)
        #expect(ScreenModel.pythonRound(.infinity) == .max && ScreenModel.pythonRound(-1e30) == .min)
    }

    @Test func wideNamesAreCutByColumnsAndFormatCharactersEscaped() {
        let wide = String(repeating: "虚", count: 40)  // 80 columns
        let headline = ScreenModel.headline(pid: 42, guestName: wide)
        #expect(TerminalText.width(headline) <= 80, "fits the line: \(headline)")
        #expect(headline == "kvm statistics - pid 42 (" + String(repeating: "虚", count: 24) + "...)")
        #expect("evil\u{202E}gnp.exe".escapedForDisplay == "evil\\u202egnp.exe")
        #expect("a\u{200B}b\u{2066}".escapedForDisplay == "a\\u200bb\\u2066")
        #expect("tag\u{E0041}".escapedForDisplay == "tag\\U000e0041")
        #expect(TerminalText.width("e\u{301}x") == 2)
        #expect(TerminalText.prefix("ab虚c", columns: 3) == "ab")
        #expect(TerminalText.padded("虚", to: 4) == "虚  ")
        let regex = ScreenModel.regexLine(String(repeating: "虚", count: 30))
        #expect(TerminalText.width(regex) == "regex filter: ".count + 44 + 3)
    }

    @Test func pythonRounding() {
        #expect(ScreenModel.pythonRound(2.5) == 2)
        #expect(ScreenModel.pythonRound(3.5) == 4)
        #expect(ScreenModel.cFormat("%7.1f", 0.25) == "    0.2")  // as Python prints it
        #expect(ScreenModel.cFormat("%7.1f", 100) == "  100.0")
    }
}
