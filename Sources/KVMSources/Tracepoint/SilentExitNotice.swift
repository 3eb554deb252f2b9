import KVMCore

/// Says once why `kvm_exit` stays at 0 when guests plainly run: some KVM modules (kvm_pvm,
/// for one) do not fire it (nor `kvm_entry`) for the exits they handle in the kernel, while
/// `kvm_userspace_exit`, which every KVM fires, counts on. Without a word the headline
/// tracepoint's zeros would read as idle guests.
struct SilentExitNotice {
    /// Exits to userspace seen with no `kvm_exit` before it is said (a few guest seconds).
    static let threshold: UInt64 = 1_000
    private var said = false

    mutating func look(at values: [EventID: UInt64], into warnings: inout [String]) {
        guard !said, let exits = values[EventID("kvm_exit")], exits == 0,
              let userspace = values[EventID("kvm_userspace_exit")], userspace >= Self.threshold else { return }
        said = true
        warnings.append("kvm_exit has not fired while guests exited to userspace \(userspace) times: this host's "
            + "KVM module does not trace the exits it handles in the kernel (kvm_pvm does not); kvm_userspace_exit "
            + "still counts exits to the VMM, and KVM's own exits statistic counts them all (--source qmp, "
            + "--source libvirt, or -d where debugfs is readable)")
    }
}
