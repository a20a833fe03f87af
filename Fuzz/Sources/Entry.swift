#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
#if FUZZING
import CLibFuzzer
#endif

/// `fence-fuzz TARGET …`. Built by Fuzz/run.sh with -sanitize=fuzzer and FUZZING, it is the
/// libFuzzer binary (the rest of the arguments are libFuzzer's); a plain build runs the files
/// given through the target, so that the corpus and every crash found are replayed by the tests.
@main
struct FuzzEntry {
    static func main() {
        guard CommandLine.arguments.count > 1, let target = FuzzTarget(rawValue: CommandLine.arguments[1]) else {
            print("usage: fence-fuzz \(FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")) [FILE…]")
            exit(2)
        }
        #if FUZZING
        selected = target
        // libFuzzer reads argv[0] and its own options: drop the target's name.
        var arguments = [CommandLine.unsafeArgv[0]] + (2..<Int(CommandLine.argc)).map { CommandLine.unsafeArgv[$0] }
        var count = Int32(arguments.count)
        arguments.append(nil)
        let status = arguments.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var argv = buffer.baseAddress
            return LLVMFuzzerRunDriver(&count, &argv) { data, size in
                selected.run(Array(UnsafeBufferPointer(start: data, count: size)))
                return 0
            }
        }
        exit(status)
        #else
        let files = CommandLine.arguments.dropFirst(2)
        for path in files { target.run(read(path)) }
        print("fence-fuzz: \(files.count) inputs through \(target.rawValue), no failure")
        #endif
    }

    private static func read(_ path: String) -> [UInt8] {
        guard let file = fopen(path, "rb") else {
            print("fence-fuzz: cannot read \(path)")
            exit(1)
        }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while case let count = fread(&buffer, 1, buffer.count, file), count > 0 { bytes += buffer[..<count] }
        return bytes
    }
}

#if FUZZING
/// Set once, before libFuzzer starts calling back.
nonisolated(unsafe) private var selected = FuzzTarget.packet
#endif
