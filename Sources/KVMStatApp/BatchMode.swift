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
        let request = ReadRequest(byGuest: byGuest, perGuest: format.labelsGuests)
        do {
            _ = try stats.read(request)
            let signal = Signals.wait(seconds: 1)
            if let signal, signal != SIGINT { Console.leave(bySignal: signal) }
            if signal == nil { Console.out(format.batch(try stats.read(request))) }
        } catch {
            Console.fail(error.description)
        }
        for warning in stats.takeWarnings() { Console.warn(warning) }
    }
}
