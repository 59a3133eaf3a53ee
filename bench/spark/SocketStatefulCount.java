// The two stateful socket counts of issue 12 for bench/compare.sh, in Java against the jars
// that the pyspark package ships, written as a Spark user writes them:
//
//   window: socketTextStream -> flatMap(split ' ') -> mapToPair((w, 1))
//           -> reduceByKeyAndWindow(+, -, WINDOW_MS, INTERVAL_MS)   (incremental: the inverse
//              function removes the batch leaving the window)
//   state:  socketTextStream -> flatMap(split ' ') -> mapToPair((w, 1))
//           -> updateStateByKey(new values summed onto the previous count); with INITIAL_FILE
//              (one word a line), the initial-RDD form, every word of the file starting at 0
//              (textFile -> mapToPair((w, 0)), the default number of partitions), so that the
//              state holds all of them from the first batch
//
// Both need a checkpoint directory (ssc.checkpoint), which Spark requires for these
// operations. The output stays small however many keys there are: the result is mapped to
// (1, count) and reduced, so each batch gives the number of keys and the sum of their counts,
// collected to the driver. The words of the batch follow from those sums: for state, the sum
// minus the previous batch's; for window, that difference plus the words of the batch that
// just left the window (derived in the same way; nothing leaves during the first WINDOW_MS).
// A StreamingListener prints one line per completed batch, as SocketWordCount does:
//
//   BATCH time_ms=T keys=K words=W sum=S records=N proc_ms=P sched_ms=S total_ms=D
//
// records is the lines the receiver stored for the batch; proc, sched and total are Spark's
// processing, scheduling and total delay of the batch.
//
// Usage: SocketStatefulCount HOST PORT BATCHES INTERVAL_MS JOB WINDOW_MS CHECKPOINT_DIR [MASTER [INITIAL_FILE]]
//        (JOB is window or state; MASTER defaults to local[2]; INITIAL_FILE, for state, to -,
//        none; spark.* system properties given to the JVM override the defaults set here)

import java.util.HashMap;
import java.util.List;
import java.util.Arrays;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.spark.HashPartitioner;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.Optional;
import org.apache.spark.api.java.function.Function2;
import org.apache.spark.streaming.Durations;
import org.apache.spark.streaming.api.java.JavaDStream;
import org.apache.spark.streaming.api.java.JavaPairDStream;
import org.apache.spark.streaming.api.java.JavaReceiverInputDStream;
import org.apache.spark.streaming.api.java.JavaStreamingContext;
import org.apache.spark.streaming.scheduler.BatchInfo;
import org.apache.spark.streaming.scheduler.StreamingListener;
import org.apache.spark.streaming.scheduler.StreamingListenerBatchCompleted;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverError;
import org.apache.spark.streaming.scheduler.StreamingListenerReceiverStopped;

import scala.Tuple2;

public final class SocketStatefulCount {
    /** Keys, words and sum of each batch's output, by batch time, until the listener prints them. */
    private static final ConcurrentHashMap<Long, long[]> COUNTED = new ConcurrentHashMap<>();
    private static final AtomicLong COMPLETED = new AtomicLong();
    /** The previous batch's sum, and the words derived for recent batches (window only). The
     *  output runs on the driver, one batch after the other. */
    private static long previousSum;
    private static final HashMap<Long, Long> WORDS_BY_TIME = new HashMap<>();

    private SocketStatefulCount() {}

    /** A delay from BatchInfo (a Scala Option of a boxed long), or -1 when it is not known. */
    private static long millis(scala.Option<Object> delay) {
        return delay.isDefined() ? ((Number) delay.get()).longValue() : -1L;
    }

    /** Records one batch's output: its keys and sum, and the words derived from the sums. */
    private static synchronized void record(long time, long keys, long sum, long windowMs) {
        long words = sum - previousSum;
        previousSum = sum;
        if (windowMs > 0) {
            Long left = WORDS_BY_TIME.remove(time - windowMs);
            words += left == null ? 0 : left;
            WORDS_BY_TIME.put(time, words);
        }
        COUNTED.put(time, new long[] {keys, words, sum});
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 7) {
            System.err.println("usage: SocketStatefulCount HOST PORT BATCHES INTERVAL_MS JOB WINDOW_MS CHECKPOINT_DIR [MASTER]");
            System.exit(2);
        }
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        long batches = Long.parseLong(args[2]);
        long intervalMs = Long.parseLong(args[3]);
        String job = args[4];
        long windowMs = Long.parseLong(args[5]);
        String checkpointDir = args[6];
        String master = args.length > 7 ? args[7] : "local[2]";
        String initialFile = args.length > 8 ? args[8] : "-";
        if (!job.equals("window") && !job.equals("state")) {
            System.err.println("SocketStatefulCount: JOB must be window or state, not " + job);
            System.exit(2);
        }

        SparkConf conf = new SparkConf()
            .setAppName("SocketStatefulCount")
            .setIfMissing("spark.master", master)
            .setIfMissing("spark.ui.enabled", "false")
            .setIfMissing("spark.driver.host", "127.0.0.1")
            .setIfMissing("spark.driver.bindAddress", "127.0.0.1");
        JavaStreamingContext ssc = new JavaStreamingContext(conf, Durations.milliseconds(intervalMs));
        ssc.sparkContext().setLogLevel("WARN");
        ssc.checkpoint(checkpointDir);

        JavaReceiverInputDStream<String> lines = ssc.socketTextStream(host, port);
        JavaPairDStream<String, Integer> pairs = lines
            .flatMap(line -> Arrays.asList(line.split(" ")).iterator())
            .mapToPair(word -> new Tuple2<>(word, 1));
        JavaPairDStream<String, Integer> result;
        long leaving;
        if (job.equals("window")) {
            result = pairs.reduceByKeyAndWindow(Integer::sum, (a, b) -> a - b,
                Durations.milliseconds(windowMs), Durations.milliseconds(intervalMs));
            leaving = windowMs;
        } else {
            Function2<List<Integer>, Optional<Integer>, Optional<Integer>> update = (values, state) -> {
                int sum = state.orElse(0);
                for (int v : values) {
                    sum += v;
                }
                return Optional.of(sum);
            };
            if (initialFile.equals("-")) {
                result = pairs.updateStateByKey(update);
            } else {
                JavaPairRDD<String, Integer> initial = ssc.sparkContext().textFile(initialFile)
                    .mapToPair(word -> new Tuple2<>(word, 0));
                result = pairs.updateStateByKey(update,
                    new HashPartitioner(ssc.sparkContext().defaultParallelism()), initial);
            }
            leaving = 0;
        }
        JavaDStream<Tuple2<Long, Long>> summary = result
            .map(pair -> new Tuple2<>(1L, (long) pair._2()))
            .reduce((a, b) -> new Tuple2<>(a._1() + b._1(), a._2() + b._2()));
        summary.foreachRDD((rdd, time) -> {
            long keys = 0;
            long sum = 0;
            for (Tuple2<Long, Long> part : rdd.collect()) {
                keys += part._1();
                sum += part._2();
            }
            record(time.milliseconds(), keys, sum, leaving);
        });

        ssc.addStreamingListener(new StreamingListener() {
            @Override
            public void onBatchCompleted(StreamingListenerBatchCompleted completed) {
                BatchInfo info = completed.batchInfo();
                long time = info.batchTime().milliseconds();
                long[] counted = COUNTED.remove(time);
                System.out.println("BATCH time_ms=" + time
                    + " keys=" + (counted == null ? -1 : counted[0])
                    + " words=" + (counted == null ? -1 : counted[1])
                    + " sum=" + (counted == null ? -1 : counted[2])
                    + " records=" + info.numRecords()
                    + " proc_ms=" + millis(info.processingDelay())
                    + " sched_ms=" + millis(info.schedulingDelay())
                    + " total_ms=" + millis(info.totalDelay()));
                System.out.flush();
                COMPLETED.incrementAndGet();
            }

            @Override
            public void onReceiverError(StreamingListenerReceiverError error) {
                System.err.println("RECEIVER error: " + error.receiverInfo().lastErrorMessage());
            }

            @Override
            public void onReceiverStopped(StreamingListenerReceiverStopped stopped) {
                System.err.println("RECEIVER stopped: " + stopped.receiverInfo().lastErrorMessage());
            }
        });

        ssc.start();
        while (COMPLETED.get() < batches) {
            if (ssc.awaitTerminationOrTimeout(20)) {
                break;
            }
        }
        ssc.stop(true, false);
        System.exit(0);
    }
}
