import CKVMSyscalls

/// The calling thread, as /proc shows it.
public enum CurrentThread {
    /// Names the thread (`/proc/PID/task/TID/comm`; the kernel keeps 15 bytes).
    public static func setName(_ name: String) {
        _ = ckvm_set_thread_name(name)
    }
}
