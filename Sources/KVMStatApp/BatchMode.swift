#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore
import KVMFormats
import KVMSources

/// `-1`: one one-second sample, printed once.
struct BatchMode {
    let stats: Stats
    let format: any Format
    var byGuest = false

    func run() {
        do {
            if format.wantsGuestEvents { try stats.enableGuestEvents() }
            try stats.get(byGuest: byGuest)
            let start = Signals.monotonicNow()
            let stamp = WallClock.now()
            let signal = Signals.wait(seconds: 1)
            if let signal, signal != SIGINT { Console.leave(bySignal: signal) }
            if signal == nil {
                let values = try stats.get(byGuest: byGuest)
                var maker = SampleMaker()
                Console.out(format.batch(maker.sample(values, of: stats, time: stamp,
                                                      interval: Signals.monotonicNow() - start,
                                                      guestEvents: format.wantsGuestEvents)))
            }
        } catch {
            Console.fail(error.description)
        }
        for warning in stats.takeWarnings() { Console.warn(warning) }
    }
}
