import Dispatch
import KVMCore
import Synchronization

/// A read-only connection to one libvirt, whose calls run on a thread of their own so that a
/// daemon that does not answer (stopped, overloaded) costs a sample its libvirt values, never
/// a hang. A call still running when its time is up is left to finish; until it has, no other
/// is made. A lost connection (the daemon restarted) is opened again by the next call.
final class LibvirtClient: @unchecked Sendable {
    enum Outcome: Sendable {
        case stats([LibvirtAPI.DomainStats])
        /// The call failed; `connected` says whether the connection was up when it did.
        case failed(String, connected: Bool)
        /// No answer in time (or the previous call is still running).
        case timedOut
    }

    let uri: String
    private let api: LibvirtAPI
    private let queue = DispatchQueue(label: "kvmstat.libvirt")
    /// Touched only on `queue`.
    private var connection: LibvirtAPI.Connection?
    private let busy = Atomic<Bool>(false)
    private let closed = Atomic<Bool>(false)

    init(api: LibvirtAPI, uri: String) {
        self.api = api
        self.uri = uri
    }

    /// Connects (if not connected) and fetches every running domain's statistics, within
    /// `timeout` seconds.
    func fetch(timeout: Double) -> Outcome {
        guard busy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return .timedOut }
        let done = DispatchSemaphore(value: 0)
        let slot = Mutex<Outcome>(.timedOut)
        queue.async {
            let outcome = self.fetchNow()
            slot.withLock { $0 = outcome }
            self.busy.store(false, ordering: .releasing)
            done.signal()
        }
        guard done.wait(timeout: .now() + timeout) == .success else { return .timedOut }
        return slot.withLock { $0 }
    }

    private func fetchNow() -> Outcome {
        guard !closed.load(ordering: .acquiring) else { return .failed("closed", connected: false) }
        if let open = connection, !api.alive(open) {
            api.close(open)
            connection = nil
        }
        if connection == nil {
            do throws(LibvirtAPI.Failure) { connection = try api.open(uri) } catch {
                return .failed(error.description, connected: false)
            }
        }
        do throws(LibvirtAPI.Failure) {
            return .stats(try api.allDomainStats(connection!))
        } catch {
            let up = api.alive(connection!)
            if !up {
                api.close(connection!)
                connection = nil
            }
            return .failed(error.description, connected: up)
        }
    }

    /// Closes the connection unless a call is still running on it (then the process's exit
    /// does): kvmstat's exit never waits for libvirt.
    func close() {
        closed.store(true, ordering: .releasing)
        guard !busy.load(ordering: .acquiring) else { return }
        queue.sync {
            if let open = connection { api.close(open) }
            connection = nil
        }
    }
}
