import KVMCore

/// The screen's vCPU view (`v`, with `--source vcpu`): per guest and vCPU, the share of the
/// interval's wall time spent in each state — running guest code, in the host kernel, in the
/// VMM's userspace, waiting for a host CPU — from the vcpu source's per-thread times; and,
/// where a KVM statistics source (qmp, libvirt) gives the same guest's `halt_wait_ns` and
/// `halt_poll_*_ns`, halted and polling too. Halt polling is time in the host kernel (system
/// time), so it is taken out of the kernel share, not counted twice; a halted vCPU thread
/// sleeps, which no /proc time holds. What is left is `other` (idle outside KVM_RUN,
/// or rounding).
enum VCPUShares {
    struct Row: Equatable {
        var guest: Int
        var vcpu: Int
        /// Percentages of the interval, by state in `states` order.
        var shares: [Double]
    }

    static let states = ["guest", "kernel", "vmm", "wait", "poll", "halted", "other"]

    /// A (guest, vCPU)'s nanoseconds by statistic over the interval, from two samples of
    /// guests' values (`previous` the earlier).
    static func rows(current: GuestValues, previous: GuestValues, interval: Double) -> [Row] {
        struct Slot: Hashable {
            var guest: Int
            var vcpu: Int
        }
        var deltas: [Slot: [String: Double]] = [:]
        // Column by column (a few hundred), rows matched by guest: no key made for each of a
        // big host's hundreds of thousands of values.
        let timed: Set<String> = ["vcpu_guest_ns", "vcpu_kernel_ns", "vcpu_vmm_ns", "vcpu_wait_ns", "halt_wait_ns",
                                  "halt_poll_success_ns", "halt_poll_fail_ns"]
        let before = current.guests.map { previous.rowIndex(of: $0) }
        for (column, key) in current.columns.enumerated() {
            guard let vcpu = key.vcpu, let statistic = key.parent, timed.contains(statistic),
                  let then = previous.columnIndex(of: key) else { continue }
            for (row, guest) in current.guests.enumerated() {
                guard let guest, let value = current.value(row: row, column: column), let old = before[row],
                      let earlier = previous.value(row: old, column: then), value >= earlier else { continue }
                deltas[Slot(guest: guest, vcpu: vcpu), default: [:]][statistic, default: 0] += Double(value - earlier)
            }
        }
        guard interval > 0 else { return [] }
        let wall = interval * 1e9
        return deltas.filter { $0.value["vcpu_kernel_ns"] != nil }.map { slot, ns in
            let poll = (ns["halt_poll_success_ns"] ?? 0) + (ns["halt_poll_fail_ns"] ?? 0)
            let kernel = max(0, (ns["vcpu_kernel_ns"] ?? 0) - poll)
            var shares = [ns["vcpu_guest_ns"] ?? 0, kernel, ns["vcpu_vmm_ns"] ?? 0, ns["vcpu_wait_ns"] ?? 0, poll,
                          ns["halt_wait_ns"] ?? 0].map { min(100, $0 / wall * 100) }
            shares.append(max(0, 100 - shares.reduce(0, +)))
            return Row(guest: slot.guest, vcpu: slot.vcpu, shares: shares)
        }.sorted { ($0.guest, $0.vcpu) < ($1.guest, $1.vcpu) }
    }

    /// The view's lines from line 2: a header, then a row per guest and vCPU, within 80
    /// columns (`poll` and `halted` only where a KVM statistics source gives them).
    static func lines(_ rows: [Row], halts: Bool, guestName: (Int) -> String, height: Int) -> [String] {
        let shown = halts ? Array(states.indices) : [0, 1, 2, 3, 6]
        var lines = ["Guest / vCPU (% of wall time)".padded(to: 30)
            + shown.map { states[$0].rightAligned(to: 7) }.joined()]
        for row in rows {
            let name = guestName(row.guest)
            let label = TerminalText.prefix((name.isEmpty ? "pid \(row.guest)" : name).escapedForDisplay, columns: 20)
                + " vcpu\(row.vcpu)"
            lines.append(TerminalText.padded(TerminalText.prefix(label, columns: 29), to: 30)
                + shown.map { ScreenModel.cFormat("%.1f", row.shares[$0]).rightAligned(to: 7) }.joined())
        }
        return Array(lines.prefix(max(0, height - 3)))
    }
}
