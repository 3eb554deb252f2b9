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

    func run() {
        do {
            try stats.get()
            let start = Signals.monotonicNow()
            let stamp = WallClock.now()
            let signal = Signals.wait(seconds: 1)
            if let signal, signal != SIGINT { Console.leave(bySignal: signal) }
            if signal == nil {
                let values = try stats.get()
                Console.out(format.batch(Sample(
                    time: stamp, interval: Signals.monotonicNow() - start, values: values,
                    histograms: stats.histograms())))
            }
        } catch {
            Console.fail(error.description)
        }
        for warning in stats.takeWarnings() { Console.warn(warning) }
    }
}
