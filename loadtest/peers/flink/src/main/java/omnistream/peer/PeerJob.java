package omnistream.peer;

import java.time.Duration;
import java.time.Instant;
import org.apache.flink.api.common.JobExecutionResult;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.RestartStrategyOptions;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.connector.file.src.FileSource;
import org.apache.flink.connector.file.src.reader.TextLineInputFormat;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.core.fs.Path;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The Flink peer of omnistream for issue #9: the same JSON-lines file in, keyed heap state,
 * exactly-once checkpoints, in a local MiniCluster.
 *
 * <pre>
 * file --FileSource(p=1)--> Parse(p=1, chained) --+-- orders --keyBy(order)--> OrderFn(p) --+
 *                                                  |                                        |
 *                                                  +-- the rest --------------------------- union
 *                                                                                           |
 *                                                     keyBy(entity) --> EntityFn(p) --> DiscardingSink
 * </pre>
 *
 * The source and the parser run as one subtask so that the events of one order (or member)
 * reach their keyed subtask in file order: a rebalance before parsing would reorder them.
 *
 * Arguments: INPUT_FILE [parallelism=2] [checkpoint interval ms=1000, 0 = none]
 * [checkpoint directory=file:///tmp/omnistream-flink-ckpt]. Prints one line of key=value.
 */
public class PeerJob {
    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: PeerJob INPUT [parallelism] [checkpoint-ms] [checkpoint-dir]");
            System.exit(2);
        }
        String input = args[0];
        int parallelism = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        long checkpointMs = args.length > 2 ? Long.parseLong(args[2]) : 1000;
        String dir = args.length > 3 ? args[3] : "file:///tmp/omnistream-flink-ckpt";

        Configuration conf = new Configuration();
        conf.set(StateBackendOptions.STATE_BACKEND, "hashmap");
        conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
        conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, dir);
        conf.set(RestartStrategyOptions.RESTART_STRATEGY, "none");
        if (checkpointMs > 0) {
            conf.set(CheckpointingOptions.CHECKPOINTING_INTERVAL, Duration.ofMillis(checkpointMs));
            conf.set(CheckpointingOptions.CHECKPOINTING_CONSISTENCY_MODE, CheckpointingMode.EXACTLY_ONCE);
        }

        long t0 = System.nanoTime();
        StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(parallelism, conf);

        FileSource<String> source =
                FileSource.forRecordStreamFormat(new TextLineInputFormat(), new Path(input)).build();
        SingleOutputStreamOperator<Cmd> cmds = env
                .fromSource(source, WatermarkStrategy.noWatermarks(), "events.jsonl")
                .setParallelism(1)
                .flatMap(new Parse())
                .name("parse")
                .setParallelism(1);

        DataStream<Cmd> fromOrders = cmds
                .filter(c -> c.kind == Cmd.ORDER).setParallelism(1).name("orders")
                .keyBy(c -> c.key)
                .process(new OrderFn())
                .name("order");
        DataStream<Cmd> direct = cmds.filter(c -> c.kind != Cmd.ORDER).setParallelism(1).name("entities");

        direct.union(fromOrders)
                .keyBy(c -> c.key)
                .process(new EntityFn())
                .name("member/sku/code")
                .sinkTo(new DiscardingSink<>())
                .name("discard");

        JobExecutionResult r = env.execute("omnistream-peer");
        long t1 = System.nanoTime();

        long lines = Parse.LINES.get();
        long first = Parse.FIRST_NANOS.get();
        long last = EntityFn.LAST_NANOS.get();
        double startup = (first - t0) / 1e9;
        double toLast = (last - t0) / 1e9;
        double processing = (last - first) / 1e9;
        double total = (t1 - t0) / 1e9;
        System.out.printf(
                "flink at=%s lines=%d rejected=%d commands=%d outputs=%d checkpoints=%d parallelism=%d"
                        + " checkpoint_ms=%d startup_s=%.3f processing_s=%.3f start_to_last_s=%.3f total_s=%.3f"
                        + " net_runtime_ms=%d events_per_s_from_start=%.0f events_per_s_processing=%.0f%n",
                Instant.now(), lines, Parse.REJECTED.get(), EntityFn.COMMANDS.get(),
                EntityFn.OUTPUTS.get(), EntityFn.CHECKPOINTS.get(), parallelism, checkpointMs,
                startup, processing, toLast, total, r.getNetRuntime(),
                lines / toLast, lines / processing);
    }
}
