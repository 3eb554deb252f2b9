#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// What the screen shows, computed without a terminal so it can be tested: upstream's header,
/// column header, and rows (sorting, child placement, percentages, totals), byte for byte.
enum ScreenModel {
    static let maxGuestNameLength = 48
    /// Shown over the headline when the watched guest has gone.
    static let deadMarker = "   Guest is DEAD   "
    static let maxRegexLength = 44

    /// Line 0: `kvm statistics - summary` or `kvm statistics - pid N (name)`.
    static func headline(pid: Int, guestName: String) -> String {
        guard pid > 0 else { return "kvm statistics - summary" }
        var name = guestName.escapedForDisplay
        if TerminalText.width(name) > maxGuestNameLength {
            name = TerminalText.prefix(name, columns: maxGuestNameLength) + "..."
        }
        return "kvm statistics - pid \(pid) " + (name.isEmpty ? "" : "(\(name))")
    }

    /// Line 1 (from column 17) when a filter is set.
    static func regexLine(_ regex: String) -> String {
        var shown = regex.escapedForDisplay
        if TerminalText.width(shown) > maxRegexLength {
            shown = TerminalText.prefix(shown, columns: maxRegexLength) + "..."
        }
        return "regex filter: " + shown
    }

    /// Line 2 (from column 1), in standout.
    static func columnHeader(displayGuests: Bool) -> String {
        (displayGuests ? "Guest Name" : "Event").padded(to: 40) + " " + "Total".rightAligned(to: 10)
            + "%Total".rightAligned(to: 7) + " " + "CurAvg/s".rightAligned(to: 8)
    }

    struct Body: Equatable {
        var rows: [String] = []
        /// The bold `Total` line after the rows, when there are at least two rows.
        var total: String?
        /// `No matching events reported yet` or `Guest removed, updating...` when no rows.
        var message: String?
    }

    /// Rows from line 3 on, for a screen of `height` lines; `interval` is the time the deltas
    /// cover. `guestName` maps a guest's pid to its name (by-guest view).
    static func body(
        values: [EventID: EventStat], sortByTotal: Bool, childEvents: Bool, displayGuests: Bool,
        interval: Double, height: Int, name: (EventID) -> String = \.name, guestName: (Int) -> String
    ) -> Body {
        // Upstream's by-guest rows are the keys that name a running guest.
        func guestLabel(_ key: EventID) -> String { key.guest.map(guestName) ?? "" }
        // Sums wrap as the kernel's own u64 sums do; nothing a file holds can trap here.
        var total: UInt64 = 0
        var childTotal: UInt64 = 0
        for (key, stat) in values {
            if displayGuests {
                if !guestLabel(key).isEmpty { total &+= stat.value }
                continue
            }
            if key.isChild { childTotal &+= stat.value } else { total &+= stat.value }
        }
        if total == 0 { total = childTotal }

        var body = Body()
        var row = 3
        var currentSum: Int64 = 0
        var parentTotal = total
        var guestRemoved = false
        for (key, shown, stat) in sortedEvents(values, sortByTotal: sortByTotal, childEvents: childEvents, name: name) {
            if row >= height - 1 || stat == .zero { break }
            var label = shown
            if displayGuests {
                label = guestLabel(key)
                if label.isEmpty { continue }
            }
            let current = stat.delta != 0 ? pythonRound(Double(stat.delta) / interval) : 0
            // Upstream's sign of a guest gone (its totals fell). Counts never fall here; a
            // level (pages_4k) may, and is shown with its negative change.
            if current < 0 && displayGuests {
                guestRemoved = true
                continue
            }
            let base: UInt64
            if !key.isChild {
                currentSum &+= stat.delta
                parentTotal = stat.value
                base = total
            } else {
                base = parentTotal
            }
            let percent = base == 0 ? 0 : Double(stat.value) * 100 / Double(base)
            body.rows.append(TerminalText.padded(label.escapedForDisplay, to: 40) + " "
                + String(stat.value).rightAligned(to: 10) + cFormat("%7.1f", percent) + " " + String(current).rightAligned(to: 8))
            row += 1
        }
        if row == 3 {
            body.message = guestRemoved ? "Guest removed, updating..." : "No matching events reported yet"
        }
        if row > 4 {
            let average = currentSum > 0 ? String(pythonRound(Double(currentSum) / interval)) : ""
            // `%-40s %10d        %8s`: the average ends under `CurAvg/s`.
            body.total = "Total".padded(to: 40) + " " + String(total).rightAligned(to: 10)
                + String(repeating: " ", count: 8) + average.rightAligned(to: 8)
        }
        return body
    }

    /// The latency view (`l`): for each latency kvmstat times, a title line and one row per
    /// reason — events, share of the time, min, p50, p99, max, mean in µs — within 80
    /// columns, cut to the screen's `height`. Rows start at line 2, in place of the column header.
    static func latencyLines(_ families: [LatencyReport.Family], height: Int) -> [String] {
        var lines: [String] = []
        for family in families {
            lines.append(family.name + " (µs, since start or r)")
            lines.append("Reason".padded(to: 16) + "Samples".rightAligned(to: 10) + "Time%".rightAligned(to: 8)
                + ["Min", "p50", "p99", "Max", "Mean"].map { $0.rightAligned(to: 9) }.joined())
            for row in family.rows {
                let times = [row.minimum, row.quantile(0.5), row.quantile(0.99), row.maximum, row.mean]
                    .map { ($0.map { cFormat("%.1f", $0 / 1000) } ?? "-").rightAligned(to: 9) }
                let label = (row.key.childLabel ?? row.key.name).escapedForDisplay
                lines.append(TerminalText.padded(TerminalText.prefix(label, columns: 15), to: 16)
                    + String(row.count).rightAligned(to: 10)
                    + LatencyReport.percent(row.sum, of: family.time).rightAligned(to: 8) + times.joined())
            }
            lines.append("")
        }
        return Array(lines.prefix(max(0, height - 3)))
    }

    /// Parents sorted by (delta, total) or total, descending; with `childEvents`, each parent's
    /// children right after it, shown indented by two spaces.
    static func sortedEvents(
        _ values: [EventID: EventStat], sortByTotal: Bool, childEvents: Bool, name: (EventID) -> String = \.name
    ) -> [(key: EventID, shown: String, stat: EventStat)] {
        let ordered = values.sorted { a, b in
            if sortByTotal {
                if a.value.value != b.value.value { return a.value.value > b.value.value }
            } else if a.value.delta != b.value.delta {
                return a.value.delta > b.value.delta
            } else if a.value.value != b.value.value {
                return a.value.value > b.value.value
            }
            return a.key < b.key  // ties in a stable, readable order
        }
        var parents: [(key: EventID, shown: String, stat: EventStat)] = []
        var children: [EventID: [(key: EventID, shown: String, stat: EventStat)]] = [:]
        for (key, stat) in ordered where stat != .zero {
            if let parent = key.parent {
                let parentKey = EventID(parent, guest: key.guest, source: key.source)
                if childEvents { children[parentKey, default: []].append((key, "  " + name(key), stat)) }
            } else {
                parents.append((key, name(key), stat))
            }
        }
        guard childEvents else { return parents }
        var result: [(key: EventID, shown: String, stat: EventStat)] = []
        for parent in parents {
            result.append(parent)
            result += children[parent.key] ?? []
        }
        return result
    }

    /// Python's round(): halves to even; beyond Int64's range (only a fake tree gets there)
    /// the limit, never a trap.
    static func pythonRound(_ value: Double) -> Int64 {
        let rounded = value.rounded(.toNearestOrEven)
        guard rounded.isFinite else { return rounded.sign == .minus ? .min : .max }
        if rounded >= 0x1p63 { return .max }
        if rounded < -0x1p63 { return .min }
        return Int64(rounded)
    }

    /// C's printf formatting for the one float column (`%7.1f`), which Python matches.
    static func cFormat(_ format: String, _ value: Double) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        _ = withVaList([value]) { args in vsnprintf(&buffer, buffer.count, format, args) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
