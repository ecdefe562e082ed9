import FerryConfig
import Foundation
import Testing

@testable import FerrySupervisor

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct ControlProtocolTests {
    @Test func workerMessagesRoundTripAsJSONLines() throws {
        let messages: [MasterToWorker] = [
            .configure(
                source: "[master]\n", fileName: "f.toml", ticketKeys: "AAAA",
                fileTicketKeys: ["https": ["AAAA", "BBBB"]],
                generation: 2, heartbeatMilliseconds: 1000),
            .ticketKeys(listener: "https", keys: ["CCCC"]),
            .backend(name: "tts", available: false),
            .accept,
            .drain(gracefulMilliseconds: 30_000),
        ]
        for message in messages {
            let line = JSONLine.encode(message)
            #expect(line.hasSuffix("\n"))
            #expect(line.dropLast().contains("\n") == false)
            #expect(JSONLine.decode(MasterToWorker.self, from: String(line.dropLast())) == message)
        }
        let stats = WorkerStats(
            connectionsOpen: 3, requests: 10, pools: [PoolStats(backend: "tts", protocol: "http", opened: 1)])
        let line = JSONLine.encode(WorkerToMaster.heartbeat(stats: stats))
        #expect(JSONLine.decode(WorkerToMaster.self, from: line) == .heartbeat(stats: stats))
        #expect(
            JSONLine.decode(WorkerToMaster.self, from: JSONLine.encode(WorkerToMaster.stoppedAccepting))
                == .stoppedAccepting)
        #expect(
            JSONLine.decode(WorkerToMaster.self, from: JSONLine.encode(WorkerToMaster.stopRequested(signal: SIGTERM)))
                == .stopRequested(signal: SIGTERM))
    }

    @Test func prometheusMetricsNamePoolsAndReasons() {
        let status = StatusDocument(
            masterPID: 1, uptimeSeconds: 5, generation: 3, configFile: "x", lastReload: nil, workers: [],
            backends: [
                .init(name: "tts", address: "127.0.0.1:1", pid: 2, state: "ready", restarts: 4, supervised: true)
            ],
            pools: [PoolStats(backend: "tts", protocol: "http", opened: 2, reused: 5, closed: ["upgraded": 1])])
        let text = Metrics.prometheus(status)
        #expect(text.contains("ferry_generation 3"))
        #expect(text.contains("ferry_pool_reused_total{backend=\"tts\",protocol=\"http\"} 5"))
        #expect(text.contains("ferry_pool_closed_total{backend=\"tts\",protocol=\"http\",reason=\"upgraded\"} 1"))
        #expect(text.contains("ferry_backend_restarts_total{backend=\"tts\"} 4"))
    }
}

@Suite struct SpawnerTests {
    @Test func spawnedChildGetsItsDescriptorsAndEnvironmentAndIsReaped() throws {
        let (masterEnd, childEnd) = try Spawner.socketPair()
        defer { close(masterEnd) }
        let pid = try Spawner.spawn(
            executable: "/bin/sh", arguments: ["-c", "echo \"$FERRY_TEST\" >&3; exit 7"],
            environment: ["FERRY_TEST": "hello", "PATH": "/usr/bin:/bin"], descriptors: [(childEnd, 3)])
        close(childEnd)
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(masterEnd, &buffer, buffer.count)
        #expect(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self) == "hello\n")
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(Spawner.Exit(status: status) == .exited(7))
    }

    @Test func childrenInheritNoOtherDescriptor() throws {
        let (keep, other) = try Spawner.socketPair()
        defer {
            close(keep)
            close(other)
        }
        let (readEnd, writeEnd) = try Spawner.pipe()
        let pid = try Spawner.spawn(
            executable: "/bin/sh", arguments: ["-c", "ls /proc/self/fd"], environment: ["PATH": "/usr/bin:/bin"],
            descriptors: [], output: writeEnd)
        close(writeEnd)
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(readEnd, &buffer, buffer.count)
            if count <= 0 { break }
            data.append(contentsOf: buffer.prefix(count))
        }
        close(readEnd)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let fds = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        // 0, 1, 2 and the fd `ls` opens for the directory listing.
        #expect(fds.allSatisfy { $0 <= 3 }, "\(fds)")
    }

    @Test func signalExitsAreDecoded() throws {
        let pid = try Spawner.spawn(
            executable: "/bin/sh", arguments: ["-c", "kill -9 $$"], environment: [:], descriptors: [])
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        #expect(Spawner.Exit(status: status) == .signaled(9))
    }
}

@Suite struct ListenerSocketTests {
    @Test func oneReusePortSocketPerSlotOnTheSamePort() throws {
        let configuration = FerryConfiguration(listeners: [
            ListenerConfiguration(name: "https", address: .inet(host: "127.0.0.1", port: 0))
        ])
        let sockets = try ListenerSockets.open(configuration, slots: 3, systemd: [:])
        defer { sockets.closeAll() }
        let listener = try #require(sockets.listeners.first)
        #expect(listener.fds.count == 3)
        #expect(Set(listener.fds).count == 3)
        let port = try #require(listener.port)
        #expect(port > 0)
        #expect(listener.fds.allSatisfy { ListenerSockets.localPort($0) == port })
    }

    /// The slots' SO_REUSEPORT sockets would let a second `ferry serve` (same user) bind the same
    /// address without an error and take a share of its connections; it is refused instead. A
    /// reload that reopens the master's own listeners is not.
    @Test func anAddressSomeoneAlreadyListensOnIsRefusedUnlessItIsOurs() throws {
        let first = try ListenerSockets.open(
            FerryConfiguration(listeners: [
                ListenerConfiguration(name: "https", address: .inet(host: "127.0.0.1", port: 0))
            ]),
            slots: 2, systemd: [:])
        defer { first.closeAll() }
        let port = try #require(first.listeners.first?.port)
        let address = ListenAddress.inet(host: "127.0.0.1", port: port)
        let configuration = FerryConfiguration(listeners: [ListenerConfiguration(name: "https", address: address)])
        #expect {
            _ = try ListenerSockets.open(configuration, slots: 2, systemd: [:])
        } throws: { error in
            "\(error)".contains("127.0.0.1:\(port)") && "\(error)".contains("already listens")
        }
        let reopened = try ListenerSockets.open(configuration, slots: 2, systemd: [:], held: [address])
        reopened.closeAll()
    }

    @Test func closingSurplusSlotsClosesTheirSockets() throws {
        let configuration = FerryConfiguration(listeners: [
            ListenerConfiguration(name: "https", address: .inet(host: "127.0.0.1", port: 0))
        ])
        var sockets = try ListenerSockets.open(configuration, slots: 3, systemd: [:])
        defer { sockets.closeAll() }
        let surplus = sockets.listeners[0].fds[2]
        let surplusInode = inode(surplus)
        sockets.closeSlots(from: 2)
        #expect(sockets.listeners[0].fds.count == 2)
        // Closed: the number is free, or (tests run in parallel) already another file's.
        #expect(surplusInode != nil && inode(surplus) != surplusInode)
        #expect(sockets.listeners[0].fds.allSatisfy { fcntl($0, F_GETFD) != -1 })
        #expect(sockets.listeners[0].fd(forSlot: 1) == sockets.listeners[0].fds[1])
    }

    private func inode(_ fd: CInt) -> UInt? {
        var info = stat()
        return fstat(fd, &info) == 0 ? UInt(info.st_ino) : nil
    }

    @Test func aSystemdListenerThatWasNotPassedIsAClearError() {
        let configuration = FerryConfiguration(listeners: [
            ListenerConfiguration(name: "https", address: .systemd(name: "https"))
        ])
        #expect {
            _ = try ListenerSockets.open(configuration, slots: 2, systemd: [:])
        } throws: { error in
            "\(error)".contains("wants the systemd socket 'https'") && "\(error)".contains("FileDescriptorName=https")
        }
    }

    @Test func aSystemdListenerIsSharedByAllSlots() throws {
        let configuration = FerryConfiguration(listeners: [
            ListenerConfiguration(name: "web", address: .systemd(name: "https"))
        ])
        let sockets = try ListenerSockets.open(configuration, slots: 4, systemd: ["https": 3])
        #expect(sockets.listeners[0].shared)
        #expect(sockets.listeners[0].fd(forSlot: 3) == 3)
    }
}
