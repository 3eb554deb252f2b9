@testable import KVMSources
import Testing

/// Which monitor of a QEMU command line kvmstat asks.
struct QEMUMonitorChoiceTests {
    @Test func theReservedMonitorIsPreferredAndTheOperatorsKept() {
        let chardev = ["-chardev", "socket,id=kvmstat,path=/run/k.sock,server=on,wait=off"]
        let mon = ["-mon", "chardev=kvmstat,mode=control"]
        let qmp = ["-qmp", "unix:/run/op.sock,server=on,wait=off"]
        func chosen(_ arguments: [String]) -> String {
            guard let found = QEMUMonitors.monitor(fromArguments: ["qemu"] + arguments) else { return "none" }
            return "\(found.path) \(found.reserved) \(found.shared ?? "-")"
        }
        #expect(chosen(qmp) == "/run/op.sock false -")
        #expect(chosen(qmp + chardev + mon) == "/run/k.sock true /run/op.sock")
        // `-mon` before its `-chardev`, and no other monitor.
        #expect(chosen(mon + chardev) == "/run/k.sock true -")
        // A chardev of that id that is no control monitor, or pretty-printed, is not one.
        #expect(chosen(qmp + chardev) == "/run/op.sock false -")
        #expect(chosen(qmp + chardev + ["-mon", "chardev=kvmstat,mode=control,pretty=on"]) == "/run/op.sock false -")
        #expect(chosen(chardev + ["-mon", "chardev=kvmstat,mode=readline"]) == "none")
        // A client socket (no `server`) is a daemon's to serve.
        #expect(chosen(["-chardev", "socket,id=kvmstat,path=/run/k.sock", "-mon", "chardev=kvmstat,mode=control"] + qmp)
                == "/run/op.sock false -")
    }
}
