#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVMCore

/// A minimal KVM guest for exact, known exit counts: one page of real-mode code that does
/// `out dx, al` twice to port 0x3f8 and then `hlt`, in a loop. Without an in-kernel irqchip
/// every `out` is a KVM_EXIT_IO and every `hlt` a KVM_EXIT_HLT to userspace, so N iterations
/// give exactly 2N `kvm_userspace_exit(IO)`, N `kvm_userspace_exit(HLT)` and 2N `kvm_pio`.
public final class VirtualMachine: @unchecked Sendable {
    // x86-64 KVM ioctl request numbers (include/uapi/linux/kvm.h).
    static let getAPIVersion: UInt = 0xAE00
    static let createVM: UInt = 0xAE01
    static let getVCPUMmapSize: UInt = 0xAE04
    static let createVCPU: UInt = 0xAE41
    static let setUserMemoryRegion: UInt = 0x4020_AE46
    static let run: UInt = 0xAE80
    static let getRegs: UInt = 0x8090_AE81
    static let setRegs: UInt = 0x4090_AE82
    static let getSregs: UInt = 0x8138_AE83
    static let setSregs: UInt = 0x4138_AE84

    static let exitIO: UInt32 = 2
    static let exitHLT: UInt32 = 5

    /// Guest-physical address of the code page.
    static let codeAddress: UInt64 = 0x1000
    /// mov dx,0x3f8; mov al,'k'; out dx,al; out dx,al; hlt; jmp back to the first out.
    static let guestCode: [UInt8] = [0xBA, 0xF8, 0x03, 0xB0, 0x6B, 0xEE, 0xEE, 0xF4, 0xEB, 0xFB]

    let kvm: FileDescriptor
    public let fd: FileDescriptor
    let memory: UnsafeMutableRawPointer
    let memorySize = 0x2000
    let runSize: Int
    public private(set) var vcpus: [VirtualCPU] = []

    public init() throws(WorkloadError) {
        kvm = try attempt("open /dev/kvm") { () throws(Errno) in try FileDescriptor.open("/dev/kvm", .readWrite) }
        let version = try attempt("KVM_GET_API_VERSION") { [kvm] () throws(Errno) in
            try kvm.ioctl(Self.getAPIVersion)
        }
        guard version == 12 else { throw WorkloadError.plain("unexpected KVM API version \(version)") }
        fd = FileDescriptor(rawValue: try attempt("KVM_CREATE_VM") { [kvm] () throws(Errno) in
            try kvm.ioctl(Self.createVM)
        })
        runSize = Int(try attempt("KVM_GET_VCPU_MMAP_SIZE") { [kvm] () throws(Errno) in
            try kvm.ioctl(Self.getVCPUMmapSize)
        })
        guard let mem = mmap(nil, memorySize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mem != MAP_FAILED
        else { throw WorkloadError("mmap guest memory", .current) }
        memory = mem
        for (i, byte) in Self.guestCode.enumerated() {
            memory.storeBytes(of: byte, toByteOffset: Int(Self.codeAddress) + i, as: UInt8.self)
        }
        // struct kvm_userspace_memory_region { u32 slot, flags; u64 gpa, size, uaddr; }
        let region = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        defer { region.deallocate() }
        region.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        region.storeBytes(of: UInt64(memorySize), toByteOffset: 16, as: UInt64.self)
        region.storeBytes(of: UInt64(UInt(bitPattern: memory)), toByteOffset: 24, as: UInt64.self)
        _ = try attempt("KVM_SET_USER_MEMORY_REGION") { [fd] () throws(Errno) in
            try fd.ioctl(Self.setUserMemoryRegion, pointer: region)
        }
    }

    /// Adds a vCPU ready to run the loop from the start.
    @discardableResult
    public func addVCPU() throws(WorkloadError) -> VirtualCPU {
        let vcpu = try VirtualCPU(vm: self, id: vcpus.count)
        vcpus.append(vcpu)
        return vcpu
    }

    /// Closes the VM and its vCPUs; the kernel removes its debugfs directory.
    public func destroy() {
        for vcpu in vcpus { vcpu.close() }
        vcpus.removeAll()
        fd.close()
        kvm.close()
        munmap(memory, memorySize)
    }
}

/// One vCPU of a `VirtualMachine`.
public final class VirtualCPU: @unchecked Sendable {
    public let id: Int
    let fd: FileDescriptor
    let run: UnsafeMutableRawPointer
    let runSize: Int

    init(vm: VirtualMachine, id: Int) throws(WorkloadError) {
        self.id = id
        fd = FileDescriptor(rawValue: try attempt("KVM_CREATE_VCPU") { () throws(Errno) in
            try vm.fd.ioctl(VirtualMachine.createVCPU, value: UInt(id))
        })
        runSize = vm.runSize
        guard let mapped = mmap(nil, runSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0),
              mapped != MAP_FAILED
        else { throw WorkloadError("mmap kvm_run", .current) }
        run = mapped
        // Real mode at 0:0x1000: cs.base = 0, cs.selector = 0 (first struct kvm_segment).
        let sregs = UnsafeMutableRawPointer.allocate(byteCount: 312, alignment: 8)
        defer { sregs.deallocate() }
        _ = try attempt("KVM_GET_SREGS") { [fd] () throws(Errno) in
            try fd.ioctl(VirtualMachine.getSregs, pointer: sregs)
        }
        sregs.storeBytes(of: UInt64(0), toByteOffset: 0, as: UInt64.self)
        sregs.storeBytes(of: UInt16(0), toByteOffset: 12, as: UInt16.self)
        _ = try attempt("KVM_SET_SREGS") { [fd] () throws(Errno) in
            try fd.ioctl(VirtualMachine.setSregs, pointer: sregs)
        }
        // struct kvm_regs: 16 GPRs, rip, rflags.
        let regs = UnsafeMutableRawPointer.allocate(byteCount: 18 * 8, alignment: 8)
        defer { regs.deallocate() }
        regs.initializeMemory(as: UInt64.self, repeating: 0, count: 18)
        regs.storeBytes(of: VirtualMachine.codeAddress, toByteOffset: 16 * 8, as: UInt64.self)
        regs.storeBytes(of: UInt64(0x2), toByteOffset: 17 * 8, as: UInt64.self)
        _ = try attempt("KVM_SET_REGS") { [fd] () throws(Errno) in
            try fd.ioctl(VirtualMachine.setRegs, pointer: regs)
        }
    }

    /// Runs the guest until it has halted `iterations` times; fails on any other exit.
    public func runLoop(iterations: Int, ioDelayMicroseconds: Int = 0) throws(WorkloadError) {
        var halts = 0
        while halts < iterations {
            do throws(Errno) { _ = try fd.ioctl(VirtualMachine.run) } catch {
                if error == .interrupted { continue }
                throw WorkloadError("KVM_RUN", error)
            }
            let reason = run.load(fromByteOffset: 8, as: UInt32.self)
            switch reason {
            case VirtualMachine.exitIO:
                // Busy, as a VMM emulating the port would be (not asleep: its thread runs).
                if ioDelayMicroseconds > 0 {
                    let until = Signals.monotonicNow() + Double(ioDelayMicroseconds) / 1e6
                    while Signals.monotonicNow() < until {}
                }
            case VirtualMachine.exitHLT: halts += 1
            default: throw WorkloadError.plain("unexpected KVM exit reason \(reason) on vCPU \(id)")
            }
        }
    }

    func close() {
        munmap(run, runSize)
        fd.close()
    }
}

public struct WorkloadError: Error, CustomStringConvertible, Sendable {
    public let description: String

    init(_ what: String, _ errno: Errno) { description = "\(what): \(errno)" }
    init(message: String) { description = message }

    static func plain(_ message: String) -> WorkloadError { WorkloadError(message: message) }
}

/// Runs one step of set-up, naming it in the error.
func attempt<T>(_ what: String, _ body: () throws(Errno) -> T) throws(WorkloadError) -> T {
    do { return try body() } catch { throw WorkloadError(what, error) }
}
