#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Short-lived threads started one after another, as QEMU's worker threads come and go: a
/// monitor watching the process by pid must retire their groups, and one that exits while its
/// group is being opened must not be fatal.
public enum ThreadChurn {
    /// Starts, every `interval` ms, a thread that lives `lifetime` ms (0: ends at once).
    public static func start(interval: Int, lifetime: Int) {
        let spec = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        spec[0] = interval
        spec[1] = lifetime
        var spawner = pthread_t()
        _ = pthread_create(&spawner, nil, { raw in
            let spec = raw!.assumingMemoryBound(to: Int.self)
            let interval = spec[0]
            let lifetime = UnsafeMutableRawPointer(bitPattern: spec[1] + 1)
            while true {
                var worker = pthread_t()
                var attributes = pthread_attr_t()
                pthread_attr_init(&attributes)
                pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
                _ = pthread_create(&worker, &attributes, { raw in
                    let lifetime = Int(bitPattern: raw) - 1
                    if lifetime > 0 { usleep(UInt32(lifetime) * 1000) }
                    return nil
                }, lifetime)
                pthread_attr_destroy(&attributes)
                usleep(UInt32(interval) * 1000)
            }
        }, spec)
    }
}
