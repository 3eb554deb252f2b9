import KVMCore

/// `kvmstat --arch-info`: what kvmstat believes about an architecture, for packagers porting it
/// and for operators wondering why `kvm_exit(...)` events are (or are not) shown.
struct ArchInfoReport {
    let detection: Detection

    var architecture: any Architecture { detection.architecture }

    var json: JSONValue {
        let arch = architecture
        return .object([
            ("arch", .string(arch.family)),
            ("variant", arch.variant.map(JSONValue.string) ?? .null),
            ("detected_by", .string(detection.detectedBy)),
            ("perf_event_open_syscall", .int(arch.perfEventOpenSyscall)),
            ("bpf_syscall", .int(arch.bpfSyscall)),
            ("ioctls", .object(arch.perfIoctls.named.map { ($0.name, .int(Int($0.value))) })),
            ("exit_reason_field", arch.exitReasonField.map(JSONValue.string) ?? .null),
            ("exit_reasons", .object(arch.exitReasons.map { ($0.name, .int($0.value)) })),
            ("userspace_exit_reasons",
             .object(UserspaceExitReasons.table.map { ($0.name, .int($0.value)) })),
            ("child_rules", .string(arch.childRuleSummary)),
        ])
    }

    var text: String {
        let arch = architecture
        var lines: [String] = []
        func row(_ label: String, _ value: String) {
            lines.append(label.padded(to: 26) + value)
        }
        row("Architecture:", arch.name)
        row("Detected by:", detection.detectedBy)
        row("perf_event_open syscall:", String(arch.perfEventOpenSyscall))
        row("bpf syscall:", String(arch.bpfSyscall))
        lines.append("perf ioctls:")
        for (name, value) in arch.perfIoctls.named {
            lines.append("  " + name.padded(to: 24) + hex(value, width: 8))
        }
        row("Exit-reason field:", arch.exitReasonField ?? "(none)")
        row("Child rules:", arch.childRuleSummary)
        if arch.exitReasons.isEmpty {
            row("Exit reasons:", arch.exitReasonField == nil
                ? "(none: no kvm_exit(REASON) events)"
                : "(no table: kvm_exit is counted without per-reason events)")
        } else {
            lines.append("Exit reasons (\(arch.exitReasonField ?? "")), \(arch.exitReasons.count):")
            appendTable(arch.exitReasons, to: &lines)
        }
        lines.append("Userspace exit reasons (kvm_userspace_exit reason), "
            + "\(UserspaceExitReasons.table.count):")
        appendTable(UserspaceExitReasons.table, to: &lines)
        return lines.joined(separator: "\n") + "\n"
    }

    private func appendTable(_ table: [ExitReason], to lines: inout [String]) {
        let width = table.map(\.name.count).max() ?? 0
        for reason in table {
            lines.append("  " + reason.name.padded(to: width + 2)
                + String(reason.value).rightAligned(to: 5) + "  " + hex(UInt(reason.value), width: 3))
        }
    }

    private func hex(_ value: UInt, width: Int) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
