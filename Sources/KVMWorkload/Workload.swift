#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// VMs whose vCPUs each live on a thread of their own (as QEMU's do), waiting for `run` to
/// execute the loop `iterations` times. Threads exist before the first run, so a monitor
/// watching this process by pid sees every vCPU thread from its start.
public final class Workload: @unchecked Sendable {
    public let iterations: Int
    /// Microseconds each vCPU spends busy in userspace on every IO exit, as a VMM emulating a
    /// device would (a known latency for the bpf source's timing to find).
    public let ioDelayMicroseconds: Int
    public private(set) var vms: [VirtualMachine] = []
    private var workers: [VCPUThread] = []

    public init(iterations: Int, ioDelayMicroseconds: Int = 0) {
        self.iterations = iterations
        self.ioDelayMicroseconds = ioDelayMicroseconds
    }

    /// Creates `count` VMs with `vcpus` vCPU threads each.
    public func addVMs(_ count: Int, vcpus: Int) throws(WorkloadError) {
        for _ in 0..<count {
            let vm = try VirtualMachine()
            vms.append(vm)
            try addVCPUs(vcpus, to: vm)
        }
    }

    /// Adds vCPU threads to `vm` (vCPU hotplug).
    public func addVCPUs(_ count: Int, to vm: VirtualMachine) throws(WorkloadError) {
        for _ in 0..<count {
            let worker = VCPUThread(vcpu: try vm.addVCPU(), iterations: iterations, ioDelay: ioDelayMicroseconds)
            try worker.start()
            workers.append(worker)
        }
    }

    /// Runs every vCPU's loop once, concurrently, and waits for all of them.
    public func runAll() throws(WorkloadError) {
        for worker in workers { worker.go() }
        var firstError: WorkloadError?
        for worker in workers {
            if let error = worker.waitDone(), firstError == nil { firstError = error }
        }
        if let firstError { throw firstError }
    }

    /// Destroys the most recently created VM; its vCPU threads end.
    public func destroyLastVM() {
        guard let vm = vms.popLast() else { return }
        let ids = Set(vm.vcpus.map { ObjectIdentifier($0) })
        for worker in workers where ids.contains(ObjectIdentifier(worker.vcpu)) { worker.stop() }
        workers.removeAll { ids.contains(ObjectIdentifier($0.vcpu)) }
        vm.destroy()
    }

    public var threadCount: Int { workers.count }
}

/// A vCPU's thread: waits for `go`, runs the loop, reports `done`.
final class VCPUThread: @unchecked Sendable {
    let vcpu: VirtualCPU
    let iterations: Int
    let ioDelay: Int
    private var thread = pthread_t()
    private var startSignal = sem_t()
    private var done = sem_t()
    private var quit = false
    private var error: WorkloadError?

    init(vcpu: VirtualCPU, iterations: Int, ioDelay: Int) {
        self.vcpu = vcpu
        self.iterations = iterations
        self.ioDelay = ioDelay
        sem_init(&startSignal, 0, 0)
        sem_init(&done, 0, 0)
    }

    func start() throws(WorkloadError) {
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let me = Unmanaged<VCPUThread>.fromOpaque(raw!).takeRetainedValue()
            me.loop()
            return nil
        }, context)
        guard rc == 0 else { throw WorkloadError("pthread_create", Errno(rawValue: rc)) }
    }

    private func loop() {
        // Named as QEMU names its vCPU threads, so monitors find them as they find QEMU's.
        CurrentThread.setName("CPU \(vcpu.id)/KVM")
        while true {
            while sem_wait(&startSignal) != 0 {}
            if quit { break }
            do throws(WorkloadError) { try vcpu.runLoop(iterations: iterations, ioDelayMicroseconds: ioDelay) } catch { self.error = error }
            sem_post(&done)
        }
        sem_post(&done)
    }

    func go() { sem_post(&startSignal) }

    func waitDone() -> WorkloadError? {
        while sem_wait(&done) != 0 {}
        return error
    }

    func stop() {
        quit = true
        sem_post(&startSignal)
        pthread_join(thread, nil)
    }
}
