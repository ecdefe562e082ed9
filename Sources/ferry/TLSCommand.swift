import ArgumentParser
import FerryConfig
import Foundation

/// `ferry tls …`: TLS housekeeping that needs no running master.
struct TLSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tls", abstract: "TLS housekeeping: session ticket keys.",
        subcommands: [GenerateTicketKey.self])

    /// Writes a new session ticket key. A fleet rotates in two steps: prepend a new key on every
    /// host (the first key encrypts, all decrypt), then, once every host has it, drop the oldest.
    struct GenerateTicketKey: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate-ticket-key",
            abstract: "Print a new session ticket key, or put it first in a ticket_keys file.",
            discussion: """
                Without --prepend, prints one key (base64 of 80 random bytes): the line a ticket_keys \
                file holds. With --prepend FILE, the new key becomes the file's first line (the key \
                that encrypts), the file keeps at most --keep keys (the oldest are dropped), and it is \
                replaced atomically with mode 0600; a running Ferry picks it up within a second.
                """)

        @Option(help: "The ticket_keys file to put the new key at the top of (created if missing).")
        var prepend: String?
        @Option(help: "With --prepend: how many keys the file keeps, the new one included.")
        var keep: Int = 3

        func validate() throws {
            guard (1...TicketKeyFile.maximumKeys).contains(keep) else {
                throw ValidationError("--keep must be between 1 and \(TicketKeyFile.maximumKeys)")
            }
        }

        func run() throws {
            let line = TicketKeyFile.generateLine()
            guard let path = prepend else {
                print(line)
                return
            }
            var keys: [[UInt8]] = []
            if FileManager.default.fileExists(atPath: path) {
                do { keys = try TicketKeyFile.read(path: path) } catch {
                    printError("ferry: \(path): \(error); not changed")
                    throw ExitCode(1)
                }
            }
            let lines = [line] + keys.prefix(keep - 1).map { Data($0).base64EncodedString() }
            let text =
                "# Ferry session ticket keys: the first encrypts, all decrypt (ferry tls generate-ticket-key)\n"
                + lines.joined(separator: "\n") + "\n"
            do { try writeAtomically(text, to: path) } catch {
                printError("ferry: cannot write \(path): \(error)")
                throw ExitCode(1)
            }
            print("ferry: \(path): new key first, \(lines.count) key\(lines.count == 1 ? "" : "s") kept")
        }

        /// A temporary file beside the target, 0600, synced, then renamed over it: a reader (the
        /// master's watch) sees the old file or the new one, never half of one.
        private func writeAtomically(_ text: String, to path: String) throws {
            let temporary = path + ".tmp-\(getpid())"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            let bytes = Array(text.utf8)
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            let synced = fsync(fd) == 0
            close(fd)
            guard written == bytes.count, synced, rename(temporary, path) == 0 else {
                let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
                unlink(temporary)
                throw error
            }
        }
    }
}
