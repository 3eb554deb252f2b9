import KVMArchARM64
import KVMArchX86
import KVMCore
import Testing

/// The tables upstream kvm_stat ships (facts of the kernel headers it was written against).
/// Every one of these entries must be in ours with the same value; newer kernels only add.
enum UpstreamTables {
    static let vmx: [String: Int] = [
        "EXCEPTION_NMI": 0, "EXTERNAL_INTERRUPT": 1, "TRIPLE_FAULT": 2, "INIT_SIGNAL": 3,
        "SIPI_SIGNAL": 4, "INTERRUPT_WINDOW": 7, "NMI_WINDOW": 8, "TASK_SWITCH": 9, "CPUID": 10,
        "HLT": 12, "INVD": 13, "INVLPG": 14, "RDPMC": 15, "RDTSC": 16, "VMCALL": 18, "VMCLEAR": 19,
        "VMLAUNCH": 20, "VMPTRLD": 21, "VMPTRST": 22, "VMREAD": 23, "VMRESUME": 24, "VMWRITE": 25,
        "VMOFF": 26, "VMON": 27, "CR_ACCESS": 28, "DR_ACCESS": 29, "IO_INSTRUCTION": 30,
        "MSR_READ": 31, "MSR_WRITE": 32, "INVALID_STATE": 33, "MSR_LOAD_FAIL": 34,
        "MWAIT_INSTRUCTION": 36, "MONITOR_TRAP_FLAG": 37, "MONITOR_INSTRUCTION": 39,
        "PAUSE_INSTRUCTION": 40, "MCE_DURING_VMENTRY": 41, "TPR_BELOW_THRESHOLD": 43,
        "APIC_ACCESS": 44, "EOI_INDUCED": 45, "GDTR_IDTR": 46, "LDTR_TR": 47, "EPT_VIOLATION": 48,
        "EPT_MISCONFIG": 49, "INVEPT": 50, "RDTSCP": 51, "PREEMPTION_TIMER": 52, "INVVPID": 53,
        "WBINVD": 54, "XSETBV": 55, "APIC_WRITE": 56, "RDRAND": 57, "INVPCID": 58, "VMFUNC": 59,
        "ENCLS": 60, "RDSEED": 61, "PML_FULL": 62, "XSAVES": 63, "XRSTORS": 64, "UMWAIT": 67,
        "TPAUSE": 68, "BUS_LOCK": 74, "NOTIFY": 75,
    ]

    static let svm: [String: Int] = {
        var t: [String: Int] = [
            "READ_CR0": 0x000, "READ_CR2": 0x002, "READ_CR3": 0x003, "READ_CR4": 0x004,
            "READ_CR8": 0x008, "WRITE_CR0": 0x010, "WRITE_CR2": 0x012, "WRITE_CR3": 0x013,
            "WRITE_CR4": 0x014, "WRITE_CR8": 0x018, "EXCP_BASE": 0x040, "LAST_EXCP": 0x05f,
            "INTR": 0x060, "NMI": 0x061, "SMI": 0x062, "INIT": 0x063, "VINTR": 0x064,
            "CR0_SEL_WRITE": 0x065, "IDTR_READ": 0x066, "GDTR_READ": 0x067, "LDTR_READ": 0x068,
            "TR_READ": 0x069, "IDTR_WRITE": 0x06a, "GDTR_WRITE": 0x06b, "LDTR_WRITE": 0x06c,
            "TR_WRITE": 0x06d, "RDTSC": 0x06e, "RDPMC": 0x06f, "PUSHF": 0x070, "POPF": 0x071,
            "CPUID": 0x072, "RSM": 0x073, "IRET": 0x074, "SWINT": 0x075, "INVD": 0x076,
            "PAUSE": 0x077, "HLT": 0x078, "INVLPG": 0x079, "INVLPGA": 0x07a, "IOIO": 0x07b,
            "MSR": 0x07c, "TASK_SWITCH": 0x07d, "FERR_FREEZE": 0x07e, "SHUTDOWN": 0x07f,
            "VMRUN": 0x080, "VMMCALL": 0x081, "VMLOAD": 0x082, "VMSAVE": 0x083, "STGI": 0x084,
            "CLGI": 0x085, "SKINIT": 0x086, "RDTSCP": 0x087, "ICEBP": 0x088, "WBINVD": 0x089,
            "MONITOR": 0x08a, "MWAIT": 0x08b, "MWAIT_COND": 0x08c, "XSETBV": 0x08d, "RDPRU": 0x08e,
            "EFER_WRITE_TRAP": 0x08f, "INVPCID": 0x0a2, "NPF": 0x400, "AVIC_INCOMPLETE_IPI": 0x401,
            "AVIC_UNACCELERATED_ACCESS": 0x402, "VMGEXIT": 0x403,
        ]
        for i in 0...7 {
            t["READ_DR\(i)"] = 0x020 + i
            t["WRITE_DR\(i)"] = 0x030 + i
        }
        for i in 0...15 { t["CR\(i)_WRITE_TRAP"] = 0x090 + i }
        return t
    }()

    static let arm64: [String: Int] = [
        "UNKNOWN": 0x00, "WFx": 0x01, "CP15_32": 0x03, "CP15_64": 0x04, "CP14_MR": 0x05,
        "CP14_LS": 0x06, "FP_ASIMD": 0x07, "CP10_ID": 0x08, "PAC": 0x09, "CP14_64": 0x0C,
        "BTI": 0x0D, "ILL": 0x0E, "SVC32": 0x11, "HVC32": 0x12, "SMC32": 0x13, "SVC64": 0x15,
        "HVC64": 0x16, "SMC64": 0x17, "SYS64": 0x18, "SVE": 0x19, "ERET": 0x1A, "FPAC": 0x1C,
        "SME": 0x1D, "IMP_DEF": 0x1F, "IABT_LOW": 0x20, "IABT_CUR": 0x21, "PC_ALIGN": 0x22,
        "DABT_LOW": 0x24, "DABT_CUR": 0x25, "SP_ALIGN": 0x26, "FP_EXC32": 0x28, "FP_EXC64": 0x2C,
        "SERROR": 0x2F, "BREAKPT_LOW": 0x30, "BREAKPT_CUR": 0x31, "SOFTSTP_LOW": 0x32,
        "SOFTSTP_CUR": 0x33, "WATCHPT_LOW": 0x34, "WATCHPT_CUR": 0x35, "BKPT32": 0x38,
        "VECTOR32": 0x3A, "BRK64": 0x3C,
    ]

    static let userspace: [String] = [
        "UNKNOWN", "EXCEPTION", "IO", "HYPERCALL", "DEBUG", "HLT", "MMIO", "IRQ_WINDOW_OPEN",
        "SHUTDOWN", "FAIL_ENTRY", "INTR", "SET_TPR", "TPR_ACCESS", "S390_SIEIC", "S390_RESET",
        "DCR", "NMI", "INTERNAL_ERROR", "OSI", "PAPR_HCALL", "S390_UCONTROL", "WATCHDOG",
        "S390_TSCH", "EPR", "SYSTEM_EVENT", "S390_STSI", "IOAPIC_EOI", "HYPERV", "ARM_NISV",
        "X86_RDMSR", "X86_WRMSR", "DIRTY_RING_FULL", "AP_RESET_HOLD", "X86_BUS_LOCK", "XEN",
        "RISCV_SBI", "RISCV_CSR", "NOTIFY",
    ]
}

func assertContains(_ table: [ExitReason], _ reference: [String: Int],
                    sourceLocation: SourceLocation = #_sourceLocation) {
    let ours = Dictionary(table.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
    for (name, value) in reference.sorted(by: { $0.value < $1.value }) {
        #expect(ours[name] == value, "\(name) should be \(value)", sourceLocation: sourceLocation)
    }
}

@Suite struct ReferenceTablesTests {
    @Test func vmxHasEveryUpstreamEntry() {
        assertContains(X86Architecture.vmx.exitReasons, UpstreamTables.vmx)
    }

    @Test func svmHasEveryUpstreamEntry() {
        assertContains(X86Architecture.svm.exitReasons, UpstreamTables.svm)
        let names = Set(X86Architecture.svm.exitReasons.map(\.name))
        #expect(!names.contains("SW") && !names.contains("ERR"), "software/error codes excluded")
        #expect(X86Architecture.svm.exitReasons.allSatisfy { $0.value < 0x8000_0000 })
    }

    @Test func arm64HasEveryUpstreamEntry() {
        assertContains(ARM64Architecture().exitReasons, UpstreamTables.arm64)
        let names = Set(ARM64Architecture().exitReasons.map(\.name))
        #expect(names.isDisjoint(with: ["MAX", "SHIFT", "MASK", "WIDTH"]))
    }

    @Test func userspaceHasEveryUpstreamEntryInOrder() {
        let reference = Dictionary(uniqueKeysWithValues:
            UpstreamTables.userspace.enumerated().map { ($0.element, $0.offset) })
        assertContains(UserspaceExitReasons.table, reference)
        let names = Set(UserspaceExitReasons.table.map(\.name))
        #expect(!names.contains("IO_IN") && !names.contains("IO_OUT") && !names.contains("HYPERV_SYNIC"))
    }

    @Test func tablesHaveUniqueNames() {
        for table in [X86Architecture.vmx.exitReasons, X86Architecture.svm.exitReasons,
                      ARM64Architecture().exitReasons, UserspaceExitReasons.table] {
            #expect(Set(table.map(\.name)).count == table.count)
        }
    }
}
